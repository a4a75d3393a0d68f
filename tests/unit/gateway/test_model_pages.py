"""Anthropic's paging of GET /v1/models (`model_pages.page_of`) and the rule that picks Anthropic's shape
on the path both SDKs share (`errors_faces.anthropic_face`)."""

from __future__ import annotations

import pytest

from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.errors_faces import anthropic_face
from switchyard.gateway.model_pages import page_of
from switchyard.gateway.schemas import AnthropicModelInfo

pytestmark = pytest.mark.unit

MODELS = [AnthropicModelInfo(id=name, display_name=name) for name in ("a", "b", "c", "d", "e")]


def _page(**cursors: object) -> tuple[list[str], bool, str | None, str | None]:
    page = page_of(MODELS, **{"limit": None, "after_id": None, "before_id": None, **cursors})  # type: ignore[arg-type]
    return [m.id for m in page.data], page.has_more, page.first_id, page.last_id


def test_pages_forward_and_back_as_anthropics_cursors() -> None:
    assert _page() == (["a", "b", "c", "d", "e"], False, "a", "e")  # 20 by default
    assert _page(limit=2) == (["a", "b"], True, "a", "b")
    assert _page(limit=2, after_id="b") == (["c", "d"], True, "c", "d")
    assert _page(limit=2, after_id="c") == (["d", "e"], False, "d", "e")
    assert _page(after_id="e") == ([], False, None, None)
    # before: the models right before the cursor; has_more: whether more lie before them
    assert _page(limit=2, before_id="e") == (["c", "d"], True, "c", "d")
    assert _page(limit=2, before_id="c") == (["a", "b"], False, "a", "b")
    assert _page(limit=1000, before_id="a") == ([], False, None, None)


@pytest.mark.parametrize(
    ("cursors", "param", "code"),
    [
        ({"limit": 0}, "limit", "invalid_value"),
        ({"limit": 1001}, "limit", "invalid_value"),
        ({"after_id": "z"}, "after_id", "invalid_value"),
        ({"before_id": "z"}, "before_id", "invalid_value"),
        ({"after_id": "a", "before_id": "c"}, "before_id", "invalid_request"),
    ],
)
def test_a_bad_limit_or_cursor_is_a_400_naming_it(cursors: dict[str, object], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as bad:
        _page(**cursors)
    assert (bad.value.status, bad.value.param, bad.value.code) == (400, param, code)


def test_the_anthropic_version_header_picks_anthropics_shape_only_on_the_shared_path() -> None:
    assert anthropic_face("/v1/messages", versioned=False)
    assert anthropic_face("/v1/messages/count_tokens", versioned=False)
    assert anthropic_face("/v1/models", versioned=True) and anthropic_face("/v1/models/auto", versioned=True)
    assert not anthropic_face("/v1/models", versioned=False)
    assert not anthropic_face("/v1/models/auto", versioned=False)
    assert not anthropic_face("/v1/modelsx", versioned=True)
    assert not anthropic_face("/v1/chat/completions", versioned=True)  # OpenAI's alone: OpenAI's shape
