"""The tokens a prompt's images and PDFs take, by each provider's documented rule. Estimates: no provider
publishes its vision tokenizer, only these rules, and a PDF's text is not read here (a page is counted at
the top of Anthropic's documented range). The count endpoints use the rule of the API they answer for;
admission and the router, which do not know the model yet, `NEUTRAL`: the most any provider's rule counts.

- Anthropic (vision guide): an image of more than 1,568 px on its long edge, or more than ~1,600 tokens
  (its table of sizes not resized goes up to 784x1568, 1,640), is scaled down, keeping its aspect ratio;
  it then takes width * height / 750 tokens (1000x1000: 1,334).
  A PDF page is its text and an image of it: 1,500-3,000 tokens a page.
- OpenAI (images and vision guide): `detail` low is 85 tokens; high (and auto) scales the image to fit a
  2048 px square, then its short side to 768 px, and takes 85 + 170 per 512 px tile (1024x1024: 765);
  gpt-4o-mini bills 2,833 + 5,667 per tile. gpt-4.1-mini/nano, gpt-5-mini/nano and o4-mini count 32 px
  patches instead (at most 1,536, scaled down to fit), times a per-model multiplier.
- Gemini (token guide): an image of at most 384 px on both sides is 258 tokens; a larger one is cut and
  scaled into 768x768 tiles of 258 each. A PDF page is 258 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from switchyard.common import documents
from switchyard.common.events import ChatMessage
from switchyard.common.media import image_size, payload

Provider = Literal["anthropic", "openai", "gemini"]

ANTHROPIC_LONG_EDGE = 1568
ANTHROPIC_PIXELS_PER_TOKEN = 750
# "~1,600 tokens": its table's largest size that is not resized is 784x1568 (1:2), ~1.23 MP.
ANTHROPIC_MAX_PIXELS = 784 * 1568
ANTHROPIC_MAX_TOKENS = math.ceil(ANTHROPIC_MAX_PIXELS / ANTHROPIC_PIXELS_PER_TOKEN)
OPENAI_LOW = 85
OPENAI_FIT, OPENAI_SHORT_SIDE, OPENAI_TILE = 2048, 768, 512
OPENAI_MAX_TILES = 6  # 768x1536: the most tiles the scaling leaves
OPENAI_PATCH, OPENAI_MAX_PATCHES = 32, 1536
GEMINI_SMALL, GEMINI_TILE, GEMINI_TOKENS = 384, 768, 258
GEMINI_UNKNOWN_TILES = 4  # an image of unknown size: counted as a 1536x1536 one
# A page's tokens: its text and its image (OpenAI documents no figure: counted as Anthropic's).
PAGE_TOKENS: dict[str, int] = {
    "anthropic": documents.TOKENS_PER_PAGE,
    "openai": documents.TOKENS_PER_PAGE,
    "gemini": GEMINI_TOKENS,
}

# (model name prefix, (base, per tile)) of OpenAI's tile-counted models that are not 85 + 170.
OPENAI_TILE_PRICES: tuple[tuple[str, tuple[int, int]], ...] = (("gpt-4o-mini", (2833, 5667)),)
# (model name prefix, multiplier) of OpenAI's patch-counted models.
OPENAI_PATCH_MULTIPLIERS: tuple[tuple[str, float], ...] = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
    ("o4-mini", 1.72),
)


@dataclass(frozen=True)
class MediaRule:
    """Whose rule counts: a provider's (with the model, for OpenAI's per-model rules), or None: the most
    any of them counts."""

    provider: Provider | None = None
    model: str = ""

    def image(self, size: tuple[int, int] | None, detail: str = "auto") -> int:
        if self.provider is None:
            return max(MediaRule(p).image(size, detail) for p in ("anthropic", "openai", "gemini"))
        if self.provider == "anthropic":
            return anthropic_image(size)
        if self.provider == "gemini":
            return gemini_image(size)
        return openai_image(size, detail=detail, model=self.model)

    def page(self) -> int:
        return max(PAGE_TOKENS.values()) if self.provider is None else PAGE_TOKENS[self.provider]


NEUTRAL = MediaRule()


def anthropic_image(size: tuple[int, int] | None) -> int:
    if size is None:
        return ANTHROPIC_MAX_TOKENS
    scale = min(1.0, ANTHROPIC_LONG_EDGE / max(size))
    width, height = size[0] * scale, size[1] * scale
    if width * height > ANTHROPIC_MAX_PIXELS:
        scale = math.sqrt(ANTHROPIC_MAX_PIXELS / (width * height))
        width, height = width * scale, height * scale
    return max(1, math.ceil(int(width) * int(height) / ANTHROPIC_PIXELS_PER_TOKEN))


def openai_image(size: tuple[int, int] | None, *, detail: str = "auto", model: str = "") -> int:
    name = model.rpartition("/")[2]
    multiplier = next((m for prefix, m in OPENAI_PATCH_MULTIPLIERS if name.startswith(prefix)), None)
    if multiplier is not None:
        return round(_patches(size) * multiplier)
    base, per_tile = next((p for prefix, p in OPENAI_TILE_PRICES if name.startswith(prefix)), (85, 170))
    if detail == "low":
        return base
    return base + per_tile * _tiles(size)


def _tiles(size: tuple[int, int] | None) -> int:
    if size is None:
        return OPENAI_MAX_TILES
    width, height = float(size[0]), float(size[1])
    if max(width, height) > OPENAI_FIT:
        scale = OPENAI_FIT / max(width, height)
        width, height = width * scale, height * scale
    if min(width, height) > OPENAI_SHORT_SIDE:
        scale = OPENAI_SHORT_SIDE / min(width, height)
        width, height = width * scale, height * scale
    return _cells(width, OPENAI_TILE) * _cells(height, OPENAI_TILE)


def _patches(size: tuple[int, int] | None) -> int:
    if size is None:
        return OPENAI_MAX_PATCHES
    width, height = size
    if _cells(width, OPENAI_PATCH) * _cells(height, OPENAI_PATCH) <= OPENAI_MAX_PATCHES:
        return _cells(width, OPENAI_PATCH) * _cells(height, OPENAI_PATCH)
    scale = math.sqrt(OPENAI_PATCH**2 * OPENAI_MAX_PATCHES / (width * height))
    across, down = width * scale / OPENAI_PATCH, height * scale / OPENAI_PATCH
    scale *= min(math.floor(across) / across, math.floor(down) / down)  # whole patches on the tighter side
    return _cells(width * scale, OPENAI_PATCH) * _cells(height * scale, OPENAI_PATCH)


def _cells(length: float, cell: int) -> int:
    """How many `cell`-sized cells cover `length` (a hair's float error does not open one more)."""
    return max(1, math.ceil(length / cell - 1e-9))


def gemini_image(size: tuple[int, int] | None) -> int:
    if size is None:
        return GEMINI_UNKNOWN_TILES * GEMINI_TOKENS
    width, height = size
    if width <= GEMINI_SMALL and height <= GEMINI_SMALL:
        return GEMINI_TOKENS
    return _cells(width, GEMINI_TILE) * _cells(height, GEMINI_TILE) * GEMINI_TOKENS


def images(message: ChatMessage) -> list[dict[str, Any]]:
    """The message's image parts (`image_url`), in order."""
    if not isinstance(message.content, list):
        return []
    return [p for p in message.content if p.get("type") == "image_url"]


def image_part_tokens(part: dict[str, Any], rule: MediaRule) -> int:
    """An `image_url` part's tokens: its size read from a data URL's header bytes; an image by URL (not
    fetched) or of a size not read counts as large as the rule lets an image be."""
    image = part.get("image_url")
    url = str(image.get("url", "")) if isinstance(image, dict) else ""
    detail = str(image.get("detail") or "auto") if isinstance(image, dict) else "auto"
    data = payload(url)
    return rule.image(None if data is None else image_size(data), detail)


def media_tokens(messages: Iterable[ChatMessage], rule: MediaRule = NEUTRAL) -> int:
    """The tokens of the messages' images and PDFs: what the count endpoints, admission (budgets, rate
    limits, the prompt-size guardrail), the router's context-window check and an upstream's missing usage
    add to the text's."""
    messages = list(messages)
    return image_tokens(messages, rule) + documents.document_tokens(messages, per_page=rule.page())


def image_tokens(messages: Iterable[ChatMessage], rule: MediaRule = NEUTRAL) -> int:
    """The tokens of the messages' images."""
    return sum(image_part_tokens(part, rule) for m in messages for part in images(m))


def media_chars(messages: Iterable[ChatMessage]) -> int:
    """The base64 characters of the messages' PDFs (of each, 512 KiB at most are decoded: ~4 ms for a
    5 MB one), for deciding whether a count runs off the event loop."""
    return sum(len(documents.data_url(part)) for m in messages for part in documents.documents(m))
