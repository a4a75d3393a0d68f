"""Daily aggregates: each usage entry added to its (organisation, day, user, model, tier, kind) row in the
same transaction that stores the entry, so an entry is counted exactly once however often it arrives."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from switchyard.billing.models import CallUsageEntry, UsageDaily, UsageEntry

E10 = Decimal(10) ** 10
PLACES = Decimal("1e-10")


def to_e10(usd: Decimal) -> int:
    """USD -> integer 1e-10 USD (the entries' precision, so nothing is rounded away)."""
    return int((usd.quantize(PLACES) * E10).to_integral_value())


def from_e10(units: int) -> Decimal:
    return (Decimal(units) / E10).quantize(PLACES)


def utc_day(moment: datetime) -> date:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


async def count_entry(session: AsyncSession, entry: UsageEntry | CallUsageEntry) -> None:
    """Adds `entry` to its daily row (created on first use) inside the caller's transaction."""
    is_task = isinstance(entry, UsageEntry)
    values = {
        "tenant_id": entry.tenant_id,
        "day": utc_day(entry.created_at),
        "user_id": (entry.user_id or "") if isinstance(entry, UsageEntry) else "",
        "model": entry.model,
        "tier": entry.tier if isinstance(entry, UsageEntry) else "call",
        "kind": "task" if is_task else "call",
        "requests": 1,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "cost_e10": to_e10(entry.cost_usd),
        "unpriced": 0 if entry.priced else 1,
    }
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(UsageDaily).values(**values)
    table = UsageDaily.__table__.c
    added = ("requests", "prompt_tokens", "completion_tokens", "cost_e10", "unpriced")
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "day", "user_id", "model", "tier", "kind"],
        set_={name: table[name] + stmt.excluded[name] for name in added},
    )
    await session.execute(stmt)
