"""A Responses WebSocket connection's latest response, whole (its input and output items), kept in memory
for as long as the connection lasts: OpenAI's WebSocket mode continues it by `previous_response_id` also
when it was not stored (`store: false`), sending only the new input items.

The connection (`responses_ws`) sets `RECENT` while it runs a response; `chain.load` looks for the
previous response there before it reads the store, and `chain.Conversation.remember` leaves each answer
there (completed or incomplete, as the store keeps them). A plain HTTP request has none."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from switchyard.gateway.stored_responses.store import StoredResponse


@dataclass
class Recent:
    """The organisation the connection authenticated as, and its latest answer (None before the first)."""

    tenant_id: str
    latest: StoredResponse | None = None

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        latest = self.latest
        if latest is None or tenant_id != self.tenant_id or latest.id != response_id:
            return None
        return latest


RECENT: ContextVar[Recent | None] = ContextVar("switchyard_recent_response", default=None)
