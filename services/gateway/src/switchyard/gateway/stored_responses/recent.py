"""A Responses WebSocket connection's latest response of each of its streams (`stream_id`; no id: the
connection's own), whole (its input and output items), kept in memory for as long as the connection
lasts: OpenAI's WebSocket mode continues it by `previous_response_id` also when it was not stored
(`store: false`), sending only the new input items, on its stream or, forking it, on another.

The connection (`responses_ws`) sets `RECENT` for each response it runs; `chain.load` looks for the
previous response there before it reads the store, and `chain.Conversation.remember` leaves each answer
there (completed or incomplete, as the store keeps them). What a connection keeps is bounded: the latest
responses of `max_lanes` streams (the least recently answered go first) and `max_bytes` in all
(SWITCHYARD_RESPONSES_WS_KEPT_BYTES); a larger response is not kept. A plain HTTP request has none."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

import orjson

from switchyard.gateway.stored_responses.store import StoredResponse

SETTING = "SWITCHYARD_RESPONSES_WS_KEPT_BYTES"


@dataclass
class Memory:
    """The organisation the connection authenticated as, and the latest answer of each stream, oldest
    first, with its size; `dropped`: the ids of the latest answers too large to keep."""

    tenant_id: str
    max_bytes: int
    max_lanes: int = 1
    kept: dict[str | None, tuple[StoredResponse, int]] = field(default_factory=dict)
    dropped: dict[str | None, str] = field(default_factory=dict)

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        if tenant_id != self.tenant_id:
            return None
        return next((r for r, _ in self.kept.values() if r.id == response_id), None)

    def keep(self, lane: str | None, record: StoredResponse) -> None:
        """`record` is the latest answer of `lane`: kept if it fits (the earlier one of the lane goes),
        making room by letting the other streams' oldest go."""
        self.kept.pop(lane, None)
        self.dropped.pop(lane, None)
        size = len(orjson.dumps(record.response))
        if size <= self.max_bytes:
            size += len(orjson.dumps(record.input))
        if size > self.max_bytes:
            self.dropped[lane] = record.id
            while len(self.dropped) > self.max_lanes:
                del self.dropped[next(iter(self.dropped))]
            return
        self.kept[lane] = (record, size)
        while len(self.kept) > self.max_lanes or sum(s for _, s in self.kept.values()) > self.max_bytes:
            del self.kept[next(iter(self.kept))]

    def forgotten(self, response_id: str) -> str:
        """What a continuation of `response_id` that found it nowhere is told, when it was this
        connection's and too large to keep."""
        if response_id not in self.dropped.values():
            return ""
        return (
            f" It was answered on this connection, not stored (`store` false), and larger than the "
            f"{self.max_bytes} bytes a connection keeps ({SETTING}): send the conversation in `input`, or "
            "store the response."
        )

    def clear(self) -> None:
        self.kept.clear()
        self.dropped.clear()


@dataclass
class Recent:
    """What one response of a connection sees: the connection's memory, and the stream it runs on."""

    memory: Memory
    lane: str | None = None

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        return self.memory.get(tenant_id, response_id)

    def keep(self, record: StoredResponse) -> None:
        self.memory.keep(self.lane, record)

    def forgotten(self, response_id: str) -> str:
        return self.memory.forgotten(response_id)


RECENT: ContextVar[Recent | None] = ContextVar("switchyard_recent_response", default=None)
