"""Daily aggregates: each usage entry added to its (organisation, day, user, model, tier, kind) row, and to
that row of its API key, in the same transaction that stores the entry, so an entry is counted exactly once
however often it arrives."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from switchyard.billing.models import CallUsageEntry, UsageDaily, UsageDailyKey, UsageEntry

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


def _daily_values(entry: UsageEntry | CallUsageEntry) -> dict[str, object]:
    is_task = isinstance(entry, UsageEntry)
    return {
        "tenant_id": entry.tenant_id,
        "day": utc_day(entry.created_at),
        "user_id": entry.user_id or "",
        "api_key_id": entry.api_key_id or "",
        "model": entry.model,
        "tier": entry.tier if isinstance(entry, UsageEntry) else "call",
        "kind": "task" if is_task else "call",
        "requests": 1,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "cache_read_tokens": entry.cache_read_tokens or 0,
        "cache_write_tokens": entry.cache_write_tokens or 0,
        "cost_e10": to_e10(entry.cost_usd),
        "unpriced": 0 if entry.priced else 1,
        "estimated": 1 if entry.usage_estimated else 0,
    }


_KEY = ("tenant_id", "day", "user_id", "model", "tier", "kind")  # usage_daily's (the previous release's)
_KEYED = (*_KEY[:3], "api_key_id", *_KEY[3:])  # usage_daily_keys'
SUMS = (  # a daily row's summed columns (also what the usage report sums)
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_e10",
    "unpriced",
    "estimated",
)


async def count_entry(session: AsyncSession, entry: UsageEntry | CallUsageEntry) -> None:
    """Adds `entry` to its daily row (created on first use) inside the caller's transaction."""
    await count_entries(session, [entry])


async def count_entries(session: AsyncSession, entries: Sequence[UsageEntry | CallUsageEntry]) -> None:
    """Adds `entries` to their daily rows inside the caller's transaction."""
    await session.run_sync(lambda sync: add_to_daily(sync.connection(), entries))


def add_to_daily(conn: Connection, entries: Sequence[UsageEntry | CallUsageEntry]) -> None:
    """Adds `entries` to their daily rows inside the connection's transaction: one upsert statement, executed
    for each row they touch (created on first use)."""
    rows: dict[tuple[object, ...], dict[str, object]] = {}
    for entry in entries:
        values = _daily_values(entry)
        key = tuple(values[k] for k in _KEYED)
        row = rows.get(key)
        if row is None:
            rows[key] = values
        else:
            for name in SUMS:
                row[name] += values[name]  # type: ignore[operator]
    if rows:
        keyed = list(rows.values())
        conn.execute(_upsert(conn.dialect.name, keyed=True), keyed)
        keyless: dict[tuple[object, ...], dict[str, object]] = {}
        for values in keyed:
            row = keyless.setdefault(
                tuple(values[k] for k in _KEY), {k: values[k] for k in _KEY} | dict.fromkeys(SUMS, 0)
            )
            for name in SUMS:
                row[name] += values[name]  # type: ignore[operator]
        conn.execute(_upsert(conn.dialect.name, keyed=False), list(keyless.values()))


@functools.cache
def _upsert(dialect: str, *, keyed: bool) -> Insert:
    """Built once per dialect and table, so SQLAlchemy compiles it once."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    model = UsageDailyKey if keyed else UsageDaily
    stmt = insert(model)
    table = model.__table__.c
    return stmt.on_conflict_do_update(
        index_elements=list(_KEYED if keyed else _KEY),
        set_={name: table[name] + stmt.excluded[name] for name in SUMS},
    )
