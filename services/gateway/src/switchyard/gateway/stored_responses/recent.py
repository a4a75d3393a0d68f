"""A Responses WebSocket connection's latest response, whole (its input and output items), kept in memory
for as long as the connection lasts: OpenAI's WebSocket mode continues it by `previous_response_id` also
when it was not stored (`store: false`), sending only the new input items.

The connection (`responses_ws`) sets `RECENT` while it runs a response; `chain.load` looks for the
previous response there before it reads the store, and `chain.Conversation.remember` leaves each answer
there (completed or incomplete, as the store keeps them), unless it is larger than the connection keeps
(`max_bytes`, SWITCHYARD_RESPONSES_WS_KEPT_BYTES). A plain HTTP request has none."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import orjson

from switchyard.gateway.stored_responses.store import StoredResponse

SETTING = "SWITCHYARD_RESPONSES_WS_KEPT_BYTES"


@dataclass
class Recent:
    """The organisation the connection authenticated as, and its latest answer (None before the first, or
    when it was too large to keep: `dropped` is then its id)."""

    tenant_id: str
    max_bytes: int
    latest: StoredResponse | None = None
    dropped: str | None = None

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        latest = self.latest
        if latest is None or tenant_id != self.tenant_id or latest.id != response_id:
            return None
        return latest

    def keep(self, record: StoredResponse) -> None:
        """`record` is the latest answer: kept if it fits, else the earlier one goes too (it is not the
        one a continuation names any more)."""
        size = len(orjson.dumps(record.response))
        if size <= self.max_bytes:
            size += len(orjson.dumps(record.input))
        fits = size <= self.max_bytes
        self.latest = record if fits else None
        self.dropped = None if fits else record.id

    def forgotten(self, response_id: str) -> str:
        """What a continuation of `response_id` that found it nowhere is told, when it was this
        connection's and too large to keep."""
        if response_id != self.dropped:
            return ""
        return (
            f" It was this connection's latest, not stored (`store` false), and larger than the "
            f"{self.max_bytes} bytes a connection keeps ({SETTING}): send the conversation in `input`, or "
            "store the response."
        )


RECENT: ContextVar[Recent | None] = ContextVar("switchyard_recent_response", default=None)
