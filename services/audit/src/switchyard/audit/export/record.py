"""What an exporter sends: one ledger entry, read from its row, with its hash (SIEMs de-duplicate on seq)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.models import LedgerEntry

PRODUCT = "Switchyard"
VENDOR = "Switchyard"
VERSION = "0.1.0"
TRACE_ID = re.compile(r"[0-9a-f]{32}")
SPAN_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    event_id: str
    recorded_at: datetime
    occurred_at: datetime
    tenant_id: str
    actor: str
    action: str
    resource: str
    outcome: str
    details: str  # canonical JSON, as stored
    entry_hash: str
    provenance: str | None = None  # canonical JSON, as stored; None: an entry written before it was recorded

    @property
    def failed(self) -> bool:
        return self.outcome != "success"

    def details_obj(self) -> Any:
        return orjson.loads(self.details)

    def provenance_obj(self) -> dict[str, Any] | None:
        """Where the entry's event came from, as the server established it (`subject`, `by`)."""
        if self.provenance is None:
            return None
        try:
            found = orjson.loads(self.provenance)
        except orjson.JSONDecodeError:
            return None
        return found if isinstance(found, dict) else None

    def published(self) -> tuple[str, str] | None:
        """(subject, who may have published there, comma-separated) for the text formats."""
        found = self.provenance_obj()
        if found is None:
            return None
        by = found.get("by")
        names = ",".join(str(name) for name in by) if isinstance(by, list) else ""
        return str(found.get("subject", "")), names

    def trace(self) -> tuple[str, str] | None:
        """(trace id, span id) in hex, when the entry's event carried a W3C trace context (entries.py)."""
        if '"trace_id"' not in self.details:
            return None
        try:
            details = self.details_obj()
        except orjson.JSONDecodeError:
            return None
        if not isinstance(details, dict):
            return None
        trace_id, span_id = details.get("trace_id"), details.get("span_id")
        if not isinstance(trace_id, str) or not isinstance(span_id, str):
            return None
        if TRACE_ID.fullmatch(trace_id) is None or SPAN_ID.fullmatch(span_id) is None:
            return None
        return trace_id, span_id


def epoch_ms(value: datetime) -> int:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return int(value.timestamp() * 1000)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


COLUMNS = tuple(Record.__slots__)


async def read_after(sessions: async_sessionmaker[AsyncSession], *, after: int, limit: int) -> list[Record]:
    table = LedgerEntry.__table__
    query = (
        select(*(table.c[c] for c in COLUMNS)).where(table.c.seq > after).order_by(table.c.seq).limit(limit)
    )
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [Record(*row) for row in rows]
