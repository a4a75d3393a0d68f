"""The analytics documents (forecast with anomaly flags, savings), read from the daily aggregates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing import analytics
from switchyard.billing.aggregates import PLACES
from switchyard.billing.reports import usage_report
from switchyard.common.billing_rpc import (
    FIRST_DAY,
    DayCost,
    Forecast,
    ForecastQuery,
    SavingsQuery,
    SavingsReport,
    UsageQuery,
)
from switchyard.common.policy import Policy

Sessions = async_sessionmaker[AsyncSession]


async def daily_costs(sessions: Sessions, *, tenant_id: str, first: date, last: date) -> dict[date, Decimal]:
    report = await usage_report(
        sessions, UsageQuery(tenant_id=tenant_id, start=first, end=last, group_by=["day"])
    )
    return {r.day: r.cost_usd for r in report.rows if r.day is not None}


async def forecast(sessions: Sessions, query: ForecastQuery) -> Forecast:
    as_of = query.as_of or datetime.now(UTC).date()
    month_first = as_of.replace(day=1)
    # Anomalies are flagged for this month's days, each against its own trailing window; nothing is
    # before the first day a query may name (as of 1970-01-01 the window would start in 1969).
    first = max(
        min(month_first, as_of - timedelta(query.window_days)) - timedelta(query.window_days), FIRST_DAY
    )
    costs = await daily_costs(sessions, tenant_id=query.tenant_id, first=first, last=as_of)
    projection = analytics.forecast_month(costs, as_of=as_of, window_days=query.window_days)
    every_day = analytics.series(costs, first, as_of)
    flags = [a for a in analytics.anomalies(every_day, window_days=query.window_days) if a.day >= month_first]
    return Forecast(
        tenant_id=query.tenant_id,
        month=as_of.strftime("%Y-%m"),
        as_of=as_of,
        spent_to_date_usd=projection.spent_to_date.quantize(PLACES),
        forecast_usd=projection.forecast.quantize(PLACES),
        trend_daily_usd=projection.trend_daily,
        method=f"least-squares line over the {query.window_days} days before as_of, projected to month end",
        daily=[DayCost(day=d, cost_usd=c.quantize(PLACES)) for d, c in every_day if d >= month_first],
        anomalies=flags,
    )


async def savings(sessions: Sessions, query: SavingsQuery, *, policy: Policy) -> SavingsReport:
    report = await usage_report(
        sessions,
        UsageQuery(
            tenant_id=query.tenant_id, start=query.start, end=query.end, group_by=["model", "tier", "kind"]
        ),
    )
    use = [
        analytics.TokenUse(
            model=r.model or "",
            tier=r.tier or "",
            kind=r.kind or "task",
            requests=r.requests,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            cost=r.cost_usd,
            cache_read_tokens=r.cache_read_tokens,
            cache_write_tokens=r.cache_write_tokens,
        )
        for r in report.rows
    ]
    lines = analytics.savings_lines(use, policy)
    paid = sum((line.paid_usd for line in lines), Decimal(0)).quantize(PLACES)
    premium = sum((line.premium_usd for line in lines), Decimal(0)).quantize(PLACES)
    reference = analytics.premium_reference(policy)
    return SavingsReport(
        tenant_id=query.tenant_id,
        start=query.start,
        end=query.end,
        premium_model=reference.id if reference else None,
        lines=lines,
        paid_usd=paid,
        premium_usd=premium,
        saved_usd=premium - paid,
        saved_pct=round(float((premium - paid) / premium * 100), 2) if premium > 0 else None,
    )
