"""Filling a ledger for tests and benchmarks: drafts with awkward content (non-ASCII, escapes, big ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.entries import EntryDraft
from switchyard.audit.models import LedgerEntry
from switchyard.audit.service import append_entries

T0 = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
AWKWARD = 'ünïcode ✓ 🚀 "quoted" = | \\ ] [ \t tab \n newline \r cr ^ caret'


def draft(n: int, *, tenant: str = "acme", big: bool = False, **changes: Any) -> EntryDraft:
    details: dict[str, Any] = {"task_id": f"t{n}", "tokens": n, "latency_ms": 12.5, "note": AWKWARD}
    if big:
        details["blob"] = "x" * 80_000
    values: dict[str, Any] = {
        "event_id": f"evt-{n:06d}",
        "occurred_at": T0 + timedelta(milliseconds=n),
        "tenant_id": tenant,
        "actor": "api_key:k1" if n % 7 else "user:ünï",
        "action": ("task.submit", "task.route", "provider.call", "key.create")[n % 4],
        "resource": f"task/t{n}",
        "outcome": "failure" if n % 11 == 0 else "success",
        "details": details,
    }
    values.update(changes)
    return EntryDraft(**values)


async def fill(
    sessions: async_sessionmaker[AsyncSession], first: int, last: int, *, batch: int = 500, big_every: int = 0
) -> None:
    for start in range(first, last + 1, batch):
        drafts = [
            draft(n, tenant="acme" if n % 3 else "globex", big=bool(big_every) and n % big_every == 0)
            for n in range(start, min(start + batch, last + 1))
        ]
        await append_entries(sessions, drafts=drafts)


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[int, LedgerEntry]:
    async with sessions() as session:
        return {r.seq: r for r in (await session.execute(select(LedgerEntry))).scalars()}
