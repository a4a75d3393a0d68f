"""The Responses API's stored responses: `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}` and
`GET /v1/responses/{id}/input_items`. Every call is scoped to the caller's organisation: another
organisation's response is 404 `response_not_found`, as is one stored with `store: false` (never kept),
expired or deleted. Any key that may run inference may read and delete its organisation's responses. A
deployment that stores none (SWITCHYARD_RESPONSES_STORE=false) still deletes what an earlier configuration
stored, so turning storing off never leaves an organisation unable to remove its conversations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from switchyard.gateway.auth import authenticate
from switchyard.gateway.conversations import shapes
from switchyard.gateway.errors import InvalidRequest, NotFound, request_id_of
from switchyard.gateway.openapi import ERRORS, error_doc
from switchyard.gateway.state import gateway_of
from switchyard.gateway.stored_responses.store import ResponseStore, StoredResponse
from switchyard.gateway.tenants import Principal

router = APIRouter(prefix="/v1/responses", tags=["responses"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    **{k: v for k, v in ERRORS.items() if k in (400, 401, 403, 429, 503)},
    404: error_doc("`response_not_found`: no such response stored for the organisation"),
}
MAX_ITEMS = 100  # OpenAI's bounds for input_items' `limit`: 1 to 100, 20 by default


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool


class InputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


@router.get(
    "/{response_id}",
    summary="A stored response, as it was answered",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "the Response"}, **_ERRORS},
)
async def retrieve_response(response_id: str, request: Request, stream: bool = False) -> Response:
    if stream:
        raise InvalidRequest(
            "stream: a stored response is read whole (background responses, which stream on retrieval, are "
            "not served)",
            code="unsupported_parameter",
            param="stream",
        )
    record, principal = await _stored(request, response_id)
    response = record.response
    output = response.get("output")
    if isinstance(output, list):
        response = {**response, "output": await for_reader(request, principal, output, once_for=response_id)}
    return Response(orjson.dumps(response), media_type="application/json")


@router.delete(
    "/{response_id}", response_model=ResponseDeleted, summary="Delete a stored response", responses=_ERRORS
)
async def delete_response(response_id: str, request: Request) -> ResponseDeleted:
    store, principal = await _store_of(request, deleting=True)
    if not await store.delete(principal.tenant_id, response_id):
        raise _not_found(response_id)
    return ResponseDeleted(id=response_id, deleted=True)


@router.get(
    "/{response_id}/input_items",
    response_model=InputItemList,
    summary="The input items a stored response answered: its whole conversation, newest first by default",
    responses=_ERRORS,
)
async def list_input_items(
    response_id: str,
    request: Request,
    limit: int = Query(default=20, ge=1, le=MAX_ITEMS),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> InputItemList:
    record, principal = await _stored(request, response_id)
    # as OpenAI lists input items: a message sent in the short form (no `type`, its text a string) is listed
    # as every message is, `type: message` with its text as a part
    items = [shapes.kept(item, item["id"]) if "id" in item else item for item in record.input]
    listed = page_of(items, order=order, after=after, limit=limit, of="response")
    return listed.model_copy(
        update={"data": await for_reader(request, principal, listed.data, once_for=response_id)}
    )


async def for_reader(
    request: Request, principal: Principal, items: list[dict[str, Any]], *, once_for: str
) -> list[dict[str, Any]]:
    """The model's answers among `items` through the reader's output guardrails: a stored response or
    conversation is the organisation's, the guardrails the reader's plan's (one answered to a user whose
    plan has no `pii_output` is redacted for one whose plan has it), as a cache hit and a task result
    are. Recorded once per stored response or conversation (`once_for`) and plan."""
    gw = gateway_of(request)
    if gw.guardrails is None:
        return items
    return await gw.guardrails.screen_items(
        items,
        principal=principal,
        request_id=request_id_of(request),
        endpoint=request.url.path,
        once_for=f"{once_for}:{principal.plan}",
    )


def page_of(
    items: Sequence[dict[str, Any]], *, order: str, after: str | None, limit: int, of: str
) -> InputItemList:
    """One page of `items` (of a response, or a conversation: `of`), in `order`, after the item `after`
    names (a 400 when it is none of them)."""
    listed = list(items if order == "asc" else items[::-1])
    if after is not None:
        at = next((n for n, item in enumerate(listed) if item.get("id") == after), None)
        if at is None:
            raise InvalidRequest(
                f"after: {after[:80]!r} is not an item of this {of}", code="invalid_value", param="after"
            )
        listed = listed[at + 1 :]
    return page(listed[:limit], has_more=len(listed) > limit)


def page(items: list[dict[str, Any]], *, has_more: bool) -> InputItemList:
    return InputItemList(
        data=items,
        first_id=items[0].get("id") if items else None,
        last_id=items[-1].get("id") if items else None,
        has_more=has_more,
    )


async def _store_of(request: Request, *, deleting: bool = False) -> tuple[ResponseStore, Principal]:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    if deleting and gw.responses is None and gw.responses_left is not None:
        return gw.responses_left, principal
    if gw.responses is None:
        raise NotFound(
            "this deployment stores no responses (SWITCHYARD_RESPONSES_STORE=false)",
            code="response_not_found",
            param="response_id",
        )
    return gw.responses, principal


async def _stored(request: Request, response_id: str) -> tuple[StoredResponse, Principal]:
    store, principal = await _store_of(request)
    record = await store.get(principal.tenant_id, response_id)
    if record is None:
        raise _not_found(response_id)
    return record, principal


def _not_found(response_id: str) -> NotFound:
    return NotFound(
        f"No response found with id '{response_id[:80]}'.", code="response_not_found", param="response_id"
    )
