"""OpenAI's Conversations API: `POST /v1/conversations`, `GET`/`POST`/`DELETE /v1/conversations/{id}` and
its items (`GET`/`POST .../items`, `GET`/`DELETE .../items/{item_id}`). Every call is scoped to the
caller's organisation: another organisation's conversation is a 404 `conversation_not_found`, as is one
deleted or expired. Any key that may run inference may use its organisation's conversations, as its
stored responses. A deployment that stores no responses (SWITCHYARD_RESPONSES_STORE=false) keeps no
conversations either, and still deletes what an earlier configuration kept."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from switchyard.gateway import bounds
from switchyard.gateway.auth import authenticate
from switchyard.gateway.bodies import read_request_body, validated
from switchyard.gateway.conversations import items as conversation_items
from switchyard.gateway.conversations.store import (
    ConversationNotFound,
    ConversationStore,
    StoredConversation,
    new_id,
    not_found,
)
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.openapi import ERRORS, error_doc
from switchyard.gateway.state import gateway_of
from switchyard.gateway.stored_responses.chain import DuplicateItem, ItemNotFound
from switchyard.gateway.stored_responses.views import MAX_ITEMS, InputItemList, for_reader, page, page_of
from switchyard.gateway.tenants import Principal

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    **{k: v for k, v in ERRORS.items() if k in (400, 401, 403, 413, 429, 503)},
    404: error_doc("`conversation_not_found` (or `item_not_found`): none such kept for the organisation"),
}
# OpenAI's `include` values: accepted, and nothing to add (items are kept whole, as they were answered)
INCLUDABLE = frozenset(
    (
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    )
)
# OpenAI's bounds: at most 16 pairs, keys up to 64 characters, values strings up to 512
Metadata = dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]]


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[Any] | None = None  # checked by `conversation_items.added`, in OpenAI's words
    metadata: Metadata | None = Field(default=None, max_length=16)


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: Metadata | None = Field(max_length=16)


class ItemsCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[Any] = Field(min_length=1)


class Conversation(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]


class ConversationDeleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool


R = TypeVar("R")


async def off_loop(read: Callable[[], R], body: bytes) -> R:
    """`read()` of `body` (its parse, its items' checks) on a worker thread when the body is large, as the
    other faces read theirs (`bounds.read_off_loop`): the items of a create call may carry as large a body
    as the limits take, whose read on the event loop every request of the replica waited for."""
    return await bounds.read_off_loop(bounds.reads(read), size=len(body))


def created(body: bytes) -> StoredConversation:
    """A create call's body read and checked: the new conversation, with its items as kept."""
    parsed = validated(body, ConversationCreate, {})
    added = conversation_items.added(parsed.items, held=set()) if parsed.items is not None else []
    return StoredConversation(new_id(), metadata=parsed.metadata or {}, items=tuple(added))


@router.post("", response_model=Conversation, summary="Create a conversation", responses=_ERRORS)
async def create_conversation(request: Request) -> dict[str, Any]:
    store, tenant_id = await _store_of(request)
    body = await read_request_body(request, gateway_of(request).settings)
    conversation = await off_loop(functools.partial(created, body), body)
    await store.create(tenant_id, conversation)
    return conversation.public()


@router.get("/{conversation_id}", response_model=Conversation, summary="A conversation", responses=_ERRORS)
async def retrieve_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    return (await _kept(request, conversation_id)).public()


@router.post(
    "/{conversation_id}",
    response_model=Conversation,
    summary="Update a conversation's metadata",
    responses=_ERRORS,
)
async def update_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    store, tenant_id = await _store_of(request)
    body = validated(await read_request_body(request, gateway_of(request).settings), ConversationUpdate, {})
    metadata = body.metadata or {}
    changed = await store.change(tenant_id, conversation_id, lambda held: replace(held, metadata=metadata))
    if changed is None:
        raise not_found(conversation_id)
    return changed.public()


@router.delete(
    "/{conversation_id}",
    response_model=ConversationDeleted,
    summary="Delete a conversation (its responses stay)",
    responses=_ERRORS,
)
async def delete_conversation(conversation_id: str, request: Request) -> ConversationDeleted:
    store, tenant_id = await _store_of(request, deleting=True)
    if not await store.delete(tenant_id, conversation_id):
        raise not_found(conversation_id)
    return ConversationDeleted(id=conversation_id, deleted=True)


@router.get(
    "/{conversation_id}/items",
    response_model=InputItemList,
    summary="A conversation's items, newest first by default",
    responses=_ERRORS,
)
async def list_items(
    conversation_id: str,
    request: Request,
    limit: int = Query(default=20, ge=1, le=MAX_ITEMS),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> InputItemList:
    _check_include(request)
    held, principal = await _kept_for(request, conversation_id)
    listed = page_of(held.items, order=order, after=after, limit=limit, of="conversation")
    screened = await for_reader(request, principal, listed.data, once_for=conversation_id)
    return listed.model_copy(update={"data": screened})


@router.post(
    "/{conversation_id}/items",
    response_model=InputItemList,
    summary="Add items to a conversation (at most 20 a call)",
    responses=_ERRORS,
)
async def create_items(conversation_id: str, request: Request) -> InputItemList:
    _check_include(request)
    store, tenant_id = await _store_of(request)
    raw = await read_request_body(request, gateway_of(request).settings)
    body = await off_loop(functools.partial(validated, raw, ItemsCreate, {}), raw)
    # checked before the store is asked (a 400 for the items, not a conflict), and against the conversation
    # as it is when the change is made (ids a client gives must not be taken meanwhile)
    first = await _kept(request, conversation_id)
    held = {str(i.get("id")) for i in first.items}
    added = await off_loop(functools.partial(conversation_items.added, body.items, held=held), raw)

    def add(held: StoredConversation) -> StoredConversation:
        taken = next((item["id"] for item in added if held.item(item["id"]) is not None), None)
        if taken is not None:
            raise DuplicateItem(f"Duplicate item found with id {taken[:80]}.", param="items")
        return replace(held, items=(*held.items, *added))

    if await store.change(tenant_id, conversation_id, add, adding=added) is None:
        raise not_found(conversation_id)
    return page(added, has_more=False)


@router.get(
    "/{conversation_id}/items/{item_id}",
    response_model=dict[str, Any],
    summary="One item of a conversation",
    responses=_ERRORS,
)
async def retrieve_item(conversation_id: str, item_id: str, request: Request) -> dict[str, Any]:
    _check_include(request)
    held, principal = await _kept_for(request, conversation_id)
    item = held.item(item_id)
    if item is None:
        raise _item_not_found(item_id)
    screened = await for_reader(request, principal, [item], once_for=conversation_id)
    if screened:
        return screened[0]
    # a reasoning item the reader's guardrails leave out: its id and type, nothing it said (its carrier
    # holds the same text)
    return {**{k: v for k, v in item.items() if k not in ("content", "encrypted_content")}, "summary": []}


@router.delete(
    "/{conversation_id}/items/{item_id}",
    response_model=Conversation,
    summary="Delete an item of a conversation; answers the conversation",
    responses=_ERRORS,
)
async def delete_item(conversation_id: str, item_id: str, request: Request) -> dict[str, Any]:
    store, tenant_id = await _store_of(request, deleting=True)

    def remove(held: StoredConversation) -> StoredConversation:
        if held.item(item_id) is None:
            raise _item_not_found(item_id)
        return replace(held, items=tuple(i for i in held.items if i.get("id") != item_id))

    changed = await store.change(tenant_id, conversation_id, remove)
    if changed is None:
        raise not_found(conversation_id)
    return changed.public()


def _check_include(request: Request) -> None:
    asked = [*request.query_params.getlist("include"), *request.query_params.getlist("include[]")]
    for value in asked:
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"include: {value[:80]!r} is not one of {', '.join(sorted(INCLUDABLE))}",
                code="invalid_value",
                param="include",
            )


async def _store_of(request: Request, *, deleting: bool = False) -> tuple[ConversationStore, str]:
    store, principal = await _store_and_reader(request, deleting=deleting)
    return store, principal.tenant_id


async def _store_and_reader(
    request: Request, *, deleting: bool = False
) -> tuple[ConversationStore, Principal]:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    responses = gw.responses or (gw.responses_left if deleting else None)
    if responses is None:
        raise ConversationNotFound(
            "this deployment stores no conversations (SWITCHYARD_RESPONSES_STORE=false)",
            param="conversation_id",
        )
    return ConversationStore(responses), principal


async def _kept(request: Request, conversation_id: str) -> StoredConversation:
    return (await _kept_for(request, conversation_id))[0]


async def _kept_for(request: Request, conversation_id: str) -> tuple[StoredConversation, Principal]:
    """The conversation and who reads it (whose output guardrails its answers pass)."""
    store, principal = await _store_and_reader(request)
    conversation = await store.get(principal.tenant_id, conversation_id)
    if conversation is None:
        raise not_found(conversation_id)
    return conversation, principal


def _item_not_found(item_id: str) -> ItemNotFound:
    return ItemNotFound(f"Item with id '{item_id[:80]}' not found.", param="item_id")
