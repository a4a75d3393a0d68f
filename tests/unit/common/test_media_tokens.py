"""Each provider's documented image and PDF rules, with their worked examples, and a prompt's count with
media in it (before, images counted nothing and a PDF's pages were guessed from its size only)."""

from __future__ import annotations

import pytest

from switchyard.common import documents
from switchyard.common.events import ChatMessage, ChatRequest
from switchyard.common.media_tokens import (
    NEUTRAL,
    MediaRule,
    anthropic_image,
    gemini_image,
    media_tokens,
    openai_image,
)
from switchyard.common.tokens import count_prompt
from tests.support import media

pytestmark = pytest.mark.unit


def test_anthropic_images_are_pixels_over_750_after_its_resizing() -> None:
    assert anthropic_image((1000, 1000)) == 1334  # the vision guide's worked example
    assert anthropic_image((200, 200)) == 54
    assert anthropic_image((1092, 1092)) == 1590  # its table's largest 1:1 size, not resized
    assert anthropic_image((784, 1568)) == 1640  # and its 1:2, the most pixels it takes as they are
    # past 1,568 px on the long edge or ~1,600 tokens it is scaled down: never more than that
    assert 1600 <= anthropic_image((4000, 3000)) <= 1640
    assert 1600 <= anthropic_image((8000, 8000)) <= 1640
    assert anthropic_image((3000, 100)) == anthropic_image((1568, 52))
    assert anthropic_image(None) == 1640  # an image of no known size: as large as it can count


def test_openai_images_by_detail_and_tiles() -> None:
    assert openai_image((1024, 1024), detail="high") == 765  # the guide's: 4 tiles of 170, and 85
    assert openai_image((1024, 1024), detail="auto") == 765
    assert openai_image((2048, 4096), detail="high") == 1105  # 768x1536: 6 tiles
    assert openai_image((4096, 8192), detail="low") == 85
    assert openai_image((512, 512)) == 255
    assert openai_image((100, 100)) == 255  # one tile at least; small images are not scaled up
    assert openai_image(None) == 1105 and openai_image(None, detail="low") == 85


def test_openai_per_model_families() -> None:
    assert openai_image((1024, 1024), model="gpt-4o-mini") == 2833 + 4 * 5667
    assert openai_image((1024, 1024), detail="low", model="openai/gpt-4o-mini") == 2833
    # patch models: 32 px patches, at most 1,536, times the model's multiplier
    assert openai_image((1024, 1024), model="gpt-4.1-mini") == round(1024 * 1.62)
    assert openai_image((1800, 2400), model="gpt-5-mini") == round(1452 * 1.62)  # scaled to 33x44 patches
    assert openai_image((1024, 1024), model="o4-mini", detail="low") == round(1024 * 1.72)
    assert openai_image((1024, 1024), model="gpt-4.1") == 765  # the full models are tile-counted


def test_gemini_images_are_258_per_768_tile() -> None:
    assert gemini_image((384, 384)) == 258
    assert gemini_image((385, 100)) == 258  # one tile
    assert gemini_image((1600, 900)) == 3 * 2 * 258
    assert gemini_image(None) == 4 * 258


def _ask(*parts: dict[str, object]) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=[{"type": "text", "text": "what is this?"}, *parts])]


def _image(data: bytes, media_type: str = "image/png", **extra: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": media.data_url(media_type, data), **extra}}


def test_a_prompts_images_count_by_the_rule_asked() -> None:
    ask = _ask(_image(media.png(1000, 1000)), _image(media.jpeg(1024, 1024), "image/jpeg", detail="low"))
    assert media_tokens(ask, MediaRule("anthropic")) == 1334 + 1399
    assert media_tokens(ask, MediaRule("openai")) == 765 + 85
    assert media_tokens(ask, MediaRule("gemini")) == 2 * 2 * 258 * 2
    assert media_tokens(ask, NEUTRAL) == max(1334, 765, 1032) + max(1399, 85, 1032)
    by_url = _ask({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}})
    assert media_tokens(by_url, MediaRule("anthropic")) == 1640  # not fetched: counted as large as can be
    garbage = _ask({"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}})
    assert media_tokens(garbage, MediaRule("gemini")) == 4 * 258


def test_count_prompt_counts_images_and_pdf_pages() -> None:
    """Before: an image counted 0 and a 3-page PDF one page (its size is far under 25 KB)."""
    text = count_prompt(ChatRequest(messages=_ask()))
    with_image = ChatRequest(messages=_ask(_image(media.png(1000, 1000))))
    assert count_prompt(with_image, media=MediaRule("anthropic")) == text + 1334
    pdf = {"type": "file", "file": {"file_data": media.data_url("application/pdf", media.pdf(3))}}
    with_pdf = ChatRequest(messages=_ask(pdf))
    assert count_prompt(with_pdf, media=MediaRule("anthropic")) == text + 3 * documents.TOKENS_PER_PAGE
    assert count_prompt(with_pdf, media=MediaRule("gemini")) == text + 3 * 258
    assert count_prompt(with_pdf) == text + 3 * documents.TOKENS_PER_PAGE  # the router's: the most


def test_tool_results_images_count_too() -> None:
    """A screenshot a tool returned (computer use, a browser agent) is in a tool message's parts."""
    shot = ChatMessage(role="tool", tool_call_id="t1", content=[_image(media.png(1280, 800))])
    assert media_tokens([shot], MediaRule("anthropic")) == anthropic_image((1280, 800))
