"""The usage report: daily aggregates of one organisation, filtered and grouped as asked."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing.aggregates import SUMS, from_e10
from switchyard.billing.models import UsageDaily, UsageDailyKey
from switchyard.common.billing_rpc import UsageQuery, UsageReport, UsageRow, UsageTotals

COLUMNS = {"user": "user_id", "key": "api_key_id"}  # group-by names -> columns


def _month_of(column: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


async def usage_report(sessions: async_sessionmaker[AsyncSession], query: UsageQuery) -> UsageReport:
    # Per key from usage_daily_keys; otherwise usage_daily, which also counts what billing replicas of a
    # release before bi0009 wrote during a rolling upgrade.
    by_key = "key" in query.group_by or query.api_key_id is not None
    table = (UsageDailyKey if by_key else UsageDaily).__table__.c
    async with sessions() as session:
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        keys: list[tuple[str, Any]] = []
        for group in dict.fromkeys(query.group_by):  # in the order asked, once each
            name = COLUMNS.get(group, group)
            column = _month_of(table.day, dialect) if name == "month" else table[name]
            keys.append((name, column.label(name)))
        stmt = select(*(c for _, c in keys), *(func.sum(table[s]).label(s) for s in SUMS)).where(
            table.tenant_id == query.tenant_id, table.day >= query.start, table.day <= query.end
        )
        if query.user_id is not None:
            stmt = stmt.where(table.user_id == query.user_id)
        if query.api_key_id is not None:
            stmt = stmt.where(table.api_key_id == query.api_key_id)
        if query.model is not None:
            stmt = stmt.where(table.model == query.model)
        if query.tier is not None:
            stmt = stmt.where(table.tier == query.tier)
        if keys:
            stmt = stmt.group_by(*(c for _, c in keys)).order_by(*(c for _, c in keys))
        result = (await session.execute(stmt)).mappings().all()
    rows = [_row(r, [n for n, _ in keys]) for r in result if r["requests"] is not None]
    return UsageReport(
        tenant_id=query.tenant_id,
        start=query.start,
        end=query.end,
        group_by=list(dict.fromkeys(query.group_by)),
        rows=rows,
        totals=totals(rows),
    )


def _row(r: Any, names: list[str]) -> UsageRow:
    fields: dict[str, Any] = {n: r[n] for n in names}
    if "day" in fields and isinstance(fields["day"], str):  # SQLite returns the stored text
        fields["day"] = date.fromisoformat(fields["day"])
    for name in ("user_id", "api_key_id"):  # "" in the aggregates: none known
        if name in fields:
            fields[name] = fields[name] or None
    return UsageRow(
        **fields,
        requests=int(r["requests"]),
        prompt_tokens=int(r["prompt_tokens"]),
        completion_tokens=int(r["completion_tokens"]),
        cache_read_tokens=int(r["cache_read_tokens"]),
        cache_write_tokens=int(r["cache_write_tokens"]),
        cost_usd=from_e10(int(r["cost_e10"])),
        unpriced=int(r["unpriced"]),
        estimated=int(r["estimated"]),
    )


def totals(rows: list[UsageRow]) -> UsageTotals:
    return UsageTotals(
        requests=sum(r.requests for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cache_read_tokens=sum(r.cache_read_tokens for r in rows),
        cache_write_tokens=sum(r.cache_write_tokens for r in rows),
        cost_usd=from_e10(sum(int(r.cost_usd.scaleb(10)) for r in rows)),
        unpriced=sum(r.unpriced for r in rows),
        estimated=sum(r.estimated for r in rows),
    )
