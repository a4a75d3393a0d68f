"""A Responses request's conversation: what `previous_response_id` and `item_reference` items stand for,
read from the organisation's stored responses, and the record kept of its answer.

The context a request is answered in is the previous response's whole input, then its output items (a
message, function calls, reasoning: each an input item as the Responses API defines them), then the
request's own input with each `item_reference` replaced by the stored item it names. `instructions` are
the request's own: a previous response's are not carried over, as OpenAI does not carry them.

Item ids name the response that made them (`msg_<task>`, `rs_<task>_<n>`, `fc_<task>_<n>` for output;
`<kind>_<task>_in<n>` for input items stored without an id), so a reference is found by reading that one
response, whichever chain it came from.

A request naming a conversation of the Conversations API (`conversation`) is answered after its items
instead, and its turn is appended to it (`conversations/turns.py`). Either context too long to answer whole
loses its oldest items when the request says `truncation: "auto"` (`truncation.py`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted
from switchyard.common.streaming import Chunk
from switchyard.gateway import bounds, responses, responses_render, responses_stream
from switchyard.gateway.bodies import json_object
from switchyard.gateway.conversations import shapes, turns
from switchyard.gateway.conversations.store import ConversationStore
from switchyard.gateway.errors import APIError, BusPayloadExceeded, InvalidRequest, RequestTooLarge
from switchyard.gateway.metrics import STORED_RESPONSES
from switchyard.gateway.responses import ITEM_PARTS, RESPONSE_ID
from switchyard.gateway.responses_tools import ClientTool
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.stored_responses.recent import RECENT, Recent
from switchyard.gateway.stored_responses.store import ResponseStore, StoredResponse
from switchyard.gateway.stored_responses.truncation import hint, kept

MAX_REFERENCED = 16  # stored responses one request's item references may read
ITEM_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
}
REPLAYED = frozenset(ITEM_PREFIX)  # output item types that are input items of the next turn
_ITEM_ID = re.compile(r"(?:msg|fc|fco|ctc|ctco|rs)_([0-9a-f]{32})(?:_[A-Za-z0-9]+)?")
_RESPONSE_ID = re.compile(rf"{RESPONSE_ID}[0-9a-f]{{32}}")


class PreviousResponseNotFound(APIError):
    status = 400
    type = "invalid_request_error"
    code = "previous_response_not_found"


class ItemNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "item_not_found"


class DuplicateItem(APIError):
    status = 400
    type = "invalid_request_error"
    code = "duplicate_item"


@dataclass
class Conversation:
    """One request's conversation: `context` the items before its own (the previous response's input and
    output), `own` its own input items with references resolved."""

    store: ResponseStore | None  # None: the deployment stores no responses
    tenant_id: str
    keep: bool  # the request asked to be stored (`store`, true unless false) and the deployment stores
    previous_response_id: str | None = None
    conversation_id: str | None = None  # the conversation (`conversation`) whose items `context` holds
    echoed: dict[str, Any] = field(default_factory=dict)  # the request's `instructions` and `metadata`
    context: list[dict[str, Any]] = field(default_factory=list)
    own: list[dict[str, Any]] = field(default_factory=list)
    resolved: bool = False  # `context` or a reference changed what the request's `input` says
    created: int = field(default_factory=lambda: int(time.time()))
    kept: bool | None = None  # whether the answer's record was stored (None: not yet tried)
    data: dict[str, Any] | None = None  # the body as read here (None: not a JSON object), parsed once
    named: dict[str, ClientTool] = field(default_factory=dict)  # how the client names its tools: `tools_of`
    recent: Recent | None = None  # the WebSocket connection's latest answer, when it came on one (`recent`)
    truncate: bool = False  # `truncation: "auto"`: `context` may lose its oldest items to fit (truncation.py)

    @property
    def items(self) -> list[dict[str, Any]] | None:
        """The whole input to answer, or None when it is the request's `input` as sent."""
        return [*self.context, *self.own] if self.resolved else None

    def fields(self) -> dict[str, Any]:
        """The response's fields this conversation sets: `store` says whether it is (or, before its end,
        is to be) stored."""
        store = self.keep if self.kept is None else self.kept
        named = {"conversation": {"id": self.conversation_id}} if self.conversation_id else {}
        return {"store": store, "previous_response_id": self.previous_response_id, **named, **self.echoed}

    async def remember(self, task: TaskSubmitted, body: dict[str, Any]) -> bool:
        """Stores the answer (`body`, the response as its client gets it) with its whole input, giving the
        request's own items that have none an id, and appends both to its conversation, if it has one.
        Returns whether the answer was stored. On a WebSocket connection the answer is its latest, stored or
        not (`recent`)."""
        whole = body.get("status") in ("completed", "incomplete")
        if whole and self.conversation_id is not None:
            assert self.store is not None  # a conversation is found in the store
            added = [*self._own_with_ids(task), *_replayed(body)]
            items = [shapes.kept(item, item["id"]) for item in added]
            await turns.append(ConversationStore(self.store), self.tenant_id, self.conversation_id, items)
        record = None
        if whole and (self.keep or self.recent is not None):
            record = StoredResponse(
                response={**body, "store": self.keep}, input=[*self.context, *self._own_with_ids(task)]
            )
            if self.recent is not None:
                self.recent.keep(record)
        if not self.keep or record is None:
            if not self.keep and self.store is not None:  # a deployment storing none asks nothing
                STORED_RESPONSES.labels("not_asked").inc()
            self.kept = False
            return False
        assert self.store is not None  # `keep` is false without a store
        self.kept = await self.store.put(self.tenant_id, record)
        return self.kept

    def _own_with_ids(self, task: TaskSubmitted) -> list[dict[str, Any]]:
        start = len(self.context)
        return [
            item if item.get("id") else {"id": _item_id(item, task.task_id, start + n), **item}
            for n, item in enumerate(self.own)
        ]

    # The Responses face for this request (`faces.Face`): its parser, its whole answer and its stream.

    def parse(self, body: bytes, *, max_prompt_chars: int) -> ChatCompletionRequest:
        measured = self.store if self.resolved else None  # the items are measured against the bus, below
        if self.keep or self.conversation_id is not None or measured is not None:  # written again, as sent
            for n, item in enumerate(self.own):  # `input`'s objects (a request with others is refused)
                bounds.check_kept(item, param=f"input.{n}")
        if measured is not None:
            if self.truncate:
                self.context = kept(
                    self.context,
                    self.own,
                    max_bytes=measured.max_value_bytes,
                    max_chars=max_prompt_chars,
                    instructions=self.echoed.get("instructions"),
                )
            _check_size(self.context, self.own, max_bytes=measured.max_value_bytes, how=self._how())
        try:
            parsed = responses.parse_request(
                body if self.data is None else self.data,
                max_prompt_chars=max_prompt_chars,
                items=self.items,
                stored=self.store is not None or self.previous_response_id is not None,
            )
        except RequestTooLarge as exc:
            if exc.code != "prompt_too_large" or not self.context:
                raise
            raise RequestTooLarge(f"{exc.message}: {self._how()}", code=exc.code, param="input") from exc
        self.named = responses.tools_of(self.data, self.items)
        # Read: the body's JSON, and the items unless they are stored with the answer, are not held while
        # it is waited for (minutes; `serving.serve`)
        self.data = None
        if not self.keep and self.recent is None:
            self.context = []
            if self.conversation_id is None:  # a conversation's turn keeps its own items, to append
                self.own = []
        return parsed

    def _how(self) -> str:
        """What a request whose items before its own are too many can do."""
        return hint(conversation=self.conversation_id is not None) if self.context else ""

    def body(self, task: TaskSubmitted, done: TaskCompleted) -> dict[str, Any]:
        return responses_render.response_body(
            task, done, created=self.created, fields=self.fields(), named=self.named
        )

    async def keep_answer(self, task: TaskSubmitted, done: TaskCompleted) -> None:
        await self.remember(task, self.body(task, done))

    def render(self, task: TaskSubmitted, done: TaskCompleted) -> bytes:
        return orjson.dumps(self.body(task, done))

    def stream(
        self,
        task: TaskSubmitted,
        head: list[Chunk | TaskCompleted],
        rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed],
        *,
        timeout_s: float,
        include_usage: bool = True,
    ) -> AsyncIterator[bytes]:
        async def keep(body: dict[str, Any]) -> bool:
            return await self.remember(task, body)

        return responses_stream.stream_events(
            task,
            head,
            rest,
            timeout_s=timeout_s,
            include_usage=include_usage,
            fields=self.fields(),
            created=self.created,
            keep=keep if self.keep or self.conversation_id or self.recent is not None else None,
            named=self.named,
        )


def own_items(raw: Any) -> list[dict[str, Any]]:
    """A request's `input` as items (a string is one user message; an empty one, none)."""
    if isinstance(raw, str) and raw:
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    return [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []


async def load(store: ResponseStore | None, tenant_id: str, body: bytes) -> Conversation:
    """The request's conversation (`store` None: the deployment stores no responses, and the parser
    refuses what needs them, but for the latest answer of the WebSocket connection the request came on,
    `recent`). A body that is not a valid request is left to the request's parser, which says what is
    wrong with it."""
    recent = RECENT.get()
    try:
        data = json_object(body)
    except InvalidRequest:
        return Conversation(store, tenant_id, keep=False, recent=recent)
    raw = data.get("input")
    bounds.check_conversation(raw, param="input", parts=ITEM_PARTS)  # before its items are looked at
    keep = store is not None and data.get("store") is not False
    conversation = Conversation(
        store,
        tenant_id,
        keep=keep,
        own=own_items(raw),
        echoed=_echoed(data),
        data=data,
        recent=recent,
        truncate=data.get("truncation") == "auto",
    )
    previous_id = data.get("previous_response_id")
    refers = any(i.get("type") == "item_reference" for i in conversation.own)
    named = data.get("conversation") is not None  # with previous_response_id: refused, as OpenAI does
    held = None  # the connection's latest answer, when the request continues it
    if recent is not None and isinstance(previous_id, str) and not named:
        held = recent.get(tenant_id, previous_id)
    if store is None and held is None:
        return conversation
    if named and store is not None:
        talk = await turns.opened(ConversationStore(store), tenant_id, data["conversation"], previous_id)
        conversation.conversation_id = talk.id
        conversation.context = list(talk.items)
        conversation.resolved = True
    if isinstance(previous_id, str) or refers:
        previous: StoredResponse | None = held
        if isinstance(previous_id, str):
            if previous is None and store is not None:
                found = _RESPONSE_ID.fullmatch(previous_id)
                previous = await store.get(tenant_id, previous_id) if found else None
            if previous is None:
                told = recent.forgotten(previous_id) if recent is not None else ""
                raise PreviousResponseNotFound(
                    f"Previous response with id '{previous_id[:80]}' not found.{told}",
                    param="previous_response_id",
                )
            conversation.previous_response_id = previous_id
            conversation.context = [*previous.input, *_replayed(previous.response)]
        conversation.own = await _resolved(store, tenant_id, conversation.own, previous)
        conversation.resolved = True
    _check_ids(conversation.context, conversation.own)
    return conversation


def _check_ids(context: list[dict[str, Any]], own: list[dict[str, Any]]) -> None:
    """Each item of a conversation once, as OpenAI has it (a 400 for an item sent again: the model would
    read that turn twice, and the ids `input_items` pages by would repeat); an id the client gives is a
    string."""
    seen = {i.get("id") for i in context}
    for n, item in enumerate(own):
        item_id = item.get("id")
        if not item_id:
            continue  # one is given when the response is stored
        if not isinstance(item_id, str):
            raise InvalidRequest(
                f"input.{n}.id: an item's id must be a string", code="invalid_type", param=f"input.{n}.id"
            )
        if item_id in seen:
            raise DuplicateItem(
                f"Duplicate item found with id {item_id[:80]}. Remove duplicate items from your input and "
                "try again (the previous response's items are part of the conversation already).",
                param=f"input.{n}",
            )
        seen.add(item_id)


def _check_size(
    context: list[dict[str, Any]], own: list[dict[str, Any]], *, max_bytes: int, how: str = ""
) -> None:
    """413 for a conversation the bus cannot carry as a task (`max_prompt_chars` counts text, not images:
    stored responses' images add up past it), found before the conversation is made into one: the
    resolved items of 17 records may be 100 MB and more."""
    size = 0
    for item in (*context, *own):
        size += len(orjson.dumps(item))
        if size > max_bytes:
            raise BusPayloadExceeded(
                f"input: the conversation (the previous response's items, the items referenced and the "
                f"request's own) is over {max_bytes} bytes, more than the bus carries as one task"
                + (f": {how}" if how else ""),
                param="input",
            )


def _echoed(data: dict[str, Any]) -> dict[str, Any]:
    """The request's fields a Response repeats as they were sent (the parser refuses invalid ones)."""
    instructions, metadata = data.get("instructions"), data.get("metadata")
    return {
        "instructions": instructions if isinstance(instructions, str) else None,
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


def _replayed(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in response.get("output", ()) if i.get("type") in REPLAYED]


async def _resolved(
    store: ResponseStore | None, tenant_id: str, items: list[dict[str, Any]], previous: StoredResponse | None
) -> list[dict[str, Any]]:
    """`items` with each `item_reference` replaced by the stored item it names (looked for in the previous
    response first, then in the response its id names, unless the deployment stores none)."""
    read: dict[str, StoredResponse | None] = {}
    out = []
    for n, item in enumerate(items):
        if item.get("type") != "item_reference":
            out.append(item)
            continue
        item_id = item.get("id")
        found = previous.item(item_id) if previous is not None and isinstance(item_id, str) else None
        named = _ITEM_ID.fullmatch(item_id) if isinstance(item_id, str) and found is None else None
        if named is not None:
            response_id = RESPONSE_ID + named.group(1)
            if response_id not in read:
                if len(read) >= MAX_REFERENCED:
                    raise InvalidRequest(
                        f"input: item references name more than {MAX_REFERENCED} stored responses",
                        param="input",
                    )
                read[response_id] = await store.get(tenant_id, response_id) if store is not None else None
            record = read[response_id]
            found = record.item(named.group(0)) if record is not None else None
        if found is None:
            shown = str(item_id)[:80]
            raise ItemNotFound(
                f"Item with id '{shown}' not found. Items are kept only for responses stored with `store` "
                "true (the default), until they expire or are deleted.",
                param=f"input.{n}",
            )
        out.append(found)
    return out


def _item_id(item: dict[str, Any], task_id: str, n: int) -> str:
    return f"{ITEM_PREFIX.get(str(item.get('type', 'message')), 'item')}_{task_id}_in{n}"
