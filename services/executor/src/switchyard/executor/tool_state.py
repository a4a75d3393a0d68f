"""What a provider returns beside a tool call (or an answer's text) and needs back with it, kept between
the tasks of one conversation, by tool call id (or a hash of the text: `text_id`).

Gemini 3 and later sign each function call (its `thoughtSignature`, the model's reasoning, encrypted) and
want the signature back when the call comes back in the history; OpenAI's reasoning models, called
statelessly through the Responses API, return their reasoning encrypted and want it back before the call
it led to. A client sends that history in OpenAI's or Anthropic's shape, which has no place for either,
so the executor keeps what an adapter puts in `Reply.carry` and hands it back as `ProviderCall.carried`
when a later task of the same tenant holds those tool calls. Without it the adapters fall back to
Google's sentinel, or send the call alone: the call passes, without the reasoning it would have
restored. Gemini 3 also signs an answer's text; that signature is kept by a hash of the text (`text_id`)
and found again when the client sends the answer back as an assistant turn (one KV write per signed
answer, one read per assistant turn of a Gemini task).

Kept per tenant (the key is a hash of the tenant and the call id, so another organisation's call ids
find nothing), for `KEEP_S`, in JetStream KV where the executors share state (every replica sees what
another kept), else in memory. Never in events or the ledger. Best effort: a store that fails costs the
signature, never the task.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Protocol

import orjson
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.common import kv, subjects
from switchyard.common.events import ChatMessage

log = logging.getLogger(__name__)

KEEP_S = 24 * 3600.0  # a conversation comes back within this, or its signatures are not worth keeping
MOST_LOADED = 64  # tool calls looked up per task: the latest ones (Gemini checks the current turn's)
STORE_TIMEOUT_S = 1.0
State = Mapping[str, Mapping[str, str]]  # tool call id -> what the provider wants back with it


class ToolStates(Protocol):
    async def load(self, tenant_id: str, call_ids: list[str]) -> dict[str, dict[str, str]]: ...

    async def save(self, tenant_id: str, states: State) -> None: ...


def state_key(tenant_id: str, call_id: str) -> str:
    return kv.tenant_key(tenant_id, call_id)


def text_id(text: str) -> str:
    """What an answer's text is kept under (a model's signature on its text, Gemini's): a hash of the
    text, the same when the client sends the answer back in the next turn's history."""
    return "text-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def tool_call_ids(messages: Iterable[ChatMessage]) -> list[str]:
    """The ids of the history's tool calls and of its assistant turns' texts (`text_id`), the latest
    `MOST_LOADED` of them."""
    ids: list[str] = []
    for m in messages:
        if m.role != "assistant":
            continue
        text = m.text()
        if text:
            ids.append(text_id(text))
        ids += [c.id for c in m.tool_calls or []]
    return ids[-MOST_LOADED:]


class LocalToolStates:
    """In this process (an executor without shared state): the newest `size` entries."""

    def __init__(self, *, keep_s: float = KEEP_S, size: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()
        self._keep_s = keep_s
        self._size = size

    async def load(self, tenant_id: str, call_ids: list[str]) -> dict[str, dict[str, str]]:
        now = time.monotonic()
        found = {}
        for call_id in call_ids:
            entry = self._entries.get(state_key(tenant_id, call_id))
            if entry is not None and entry[0] > now:
                found[call_id] = entry[1]
        return found

    async def save(self, tenant_id: str, states: State) -> None:
        until = time.monotonic() + self._keep_s
        for call_id, state in states.items():
            key = state_key(tenant_id, call_id)
            self._entries[key] = (until, dict(state))
            self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class KVToolStates:
    """In the `switchyard-tool-state` bucket, whose entries expire after `KEEP_S`."""

    def __init__(self, bucket: KeyValue) -> None:
        self.kv = bucket

    async def load(self, tenant_id: str, call_ids: list[str]) -> dict[str, dict[str, str]]:
        async def one(call_id: str) -> tuple[str, dict[str, str] | None]:
            value, _ = await kv.read(self.kv, state_key(tenant_id, call_id))
            return call_id, orjson.loads(value) if value else None

        found = await asyncio.gather(*(one(c) for c in call_ids))
        return {call_id: state for call_id, state in found if isinstance(state, dict)}

    async def save(self, tenant_id: str, states: State) -> None:
        await asyncio.gather(
            *(self.kv.put(state_key(tenant_id, c), orjson.dumps(dict(s))) for c, s in states.items())
        )


async def tool_state_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_TOOL_STATE, ttl_s=KEEP_S)


async def carried(states: ToolStates | None, tenant_id: str, messages: Iterable[ChatMessage]) -> State:
    """What was kept for the history's tool calls; nothing when there is no store, or it fails."""
    ids = tool_call_ids(messages)
    if states is None or not ids:
        return {}
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            return await states.load(tenant_id, ids)
    except Exception as exc:  # the adapter falls back to the sentinel
        log.warning("could not read the tool-call state of %d calls: %s", len(ids), exc)
        return {}


async def keep(states: ToolStates | None, tenant_id: str, carry: State) -> None:
    if states is None or not carry:
        return
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            await states.save(tenant_id, carry)
    except Exception as exc:  # the next turn's calls go back with the sentinel
        log.warning("could not keep the tool-call state of %d calls: %s", len(carry), exc)
