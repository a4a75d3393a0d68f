"""Anthropic's paging of `GET /v1/models` (the Anthropic SDK's `models.list()` and its auto-paging): a
page of `limit` models (default 20, 1 to 1000) from the start, right after the model `after_id`, or right
before the model `before_id`; `has_more` says whether more lie in that direction, and `first_id` /
`last_id` are the cursors for the page before / after."""

from __future__ import annotations

from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.schemas import AnthropicModelInfo, AnthropicModelList

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def page_of(
    models: list[AnthropicModelInfo], *, limit: int | None, after_id: str | None, before_id: str | None
) -> AnthropicModelList:
    """The page of `models` the cursors ask for. 400 `invalid_value` for a limit outside 1 to 1000 or a
    cursor that is not one of `models` (a model the key may not use is not one), 400 `invalid_request`
    for both cursors at once."""
    size = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= size <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit: {size} is out of range: it is 1 to {MAX_LIMIT}", code="invalid_value", param="limit"
        )
    if after_id is not None and before_id is not None:
        raise InvalidRequest("give one of before_id and after_id, not both", param="before_id")
    if before_id is not None:
        earlier = models[: _at(models, before_id, "before_id")]
        page, more = earlier[-size:], len(earlier) > size
    else:
        later = models if after_id is None else models[_at(models, after_id, "after_id") + 1 :]
        page, more = later[:size], len(later) > size
    return AnthropicModelList(
        data=page,
        has_more=more,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )


def _at(models: list[AnthropicModelInfo], cursor: str, param: str) -> int:
    at = next((n for n, model in enumerate(models) if model.id == cursor), None)
    if at is None:
        raise InvalidRequest(
            f"{param}: {cursor[:80]!r} is not a model this key may list; GET /v1/models lists them",
            code="invalid_value",
            param=param,
        )
    return at
