"""The monthly statement of an organisation: a line per model, tier and kind, totals, and the proof that
they reconcile with the usage entries themselves (summed one by one, to the last 1e-10 USD)."""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing.aggregates import from_e10, to_e10
from switchyard.billing.models import CallUsageEntry, UsageEntry
from switchyard.billing.reports import usage_report
from switchyard.common.billing_rpc import Statement, StatementLine, StatementQuery, UsageQuery


def month_bounds(month: str) -> tuple[date, date]:
    year, mon = (int(p) for p in month.split("-"))
    return date(year, mon, 1), date(year, mon, monthrange(year, mon)[1])


async def monthly_statement(
    sessions: async_sessionmaker[AsyncSession], query: StatementQuery, *, now: datetime | None = None
) -> Statement:
    first, last = month_bounds(query.month)
    report = await usage_report(
        sessions,
        UsageQuery(tenant_id=query.tenant_id, start=first, end=last, group_by=["model", "tier", "kind"]),
    )
    lines = [
        StatementLine(
            model=r.model or "",
            tier=r.tier or "",
            kind=r.kind or "",
            requests=r.requests,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            cache_read_tokens=r.cache_read_tokens,
            cache_write_tokens=r.cache_write_tokens,
            cost_usd=r.cost_usd,
            estimated=r.estimated,
        )
        for r in report.rows
    ]
    count, cost = await entries_total(sessions, tenant_id=query.tenant_id, first=first, last=last)
    return Statement(
        tenant_id=query.tenant_id,
        month=query.month,
        period_start=first,
        period_end=last,
        lines=lines,
        totals=report.totals,
        entries=count,
        entries_cost_usd=cost,
        reconciled=count == report.totals.requests and cost == report.totals.cost_usd,
        generated_at=now or datetime.now(UTC),
    )


async def entries_total(
    sessions: async_sessionmaker[AsyncSession], *, tenant_id: str, first: date, last: date
) -> tuple[int, Decimal]:
    """(entries, their cost) in the days first..last, read entry by entry (independent of the aggregates)."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    count = 0
    units = 0
    async with sessions() as session:
        for model in (UsageEntry, CallUsageEntry):
            stmt = select(model.cost_usd).where(
                model.tenant_id == tenant_id,
                model.created_at >= _param(start, session),
                model.created_at < _param(end, session),
            )
            for (cost,) in await session.execute(stmt):
                count += 1
                units += to_e10(Decimal(cost))
    return count, from_e10(units)


def _param(moment: datetime, session: AsyncSession) -> datetime:
    """SQLite stores naive UTC text (as aiosqlite hands it back): compare with the same."""
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        return moment.replace(tzinfo=None)
    return moment
