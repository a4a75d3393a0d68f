"""Per-key usage, on real SQLite and PostgreSQL: a task's entry and a billed call's name the API key that
ran them (its id, never its secret), the daily aggregates count each key apart, and the usage report
breaks usage down by key (`group_by=key`, `api_key_id=`), so a key's budget reconciles from billing's
statements. bi0009 adds the columns (earlier entries: no key) and its downgrade sums the keys back."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SAWarning

from switchyard.billing.calls import record_call_usage
from switchyard.billing.db import migrations
from switchyard.billing.models import CallUsageEntry, UsageDaily, UsageDailyKey, UsageEntry
from switchyard.billing.reports import usage_report
from switchyard.billing.service import record_usage
from switchyard.common.billing_rpc import UsageQuery, usage_csv
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import ProviderCallRecorded, Usage
from tests.integration.billing.test_usage_db import completed
from tests.support.prices import price_sheet

pytestmark = pytest.mark.integration
TODAY = datetime.now(UTC).date()


def _call(event_task: str, key: str | None) -> ProviderCallRecorded:
    return ProviderCallRecorded(
        task_id=event_task,
        tenant_id="acme",
        user_id="u1",
        api_key_id=key,
        attempt=1,
        provider="anthropic",
        model="anthropic/claude-sonnet-4-6",
        outcome="cancelled",
        latency_ms=5.0,
        usage=Usage(prompt_tokens=100, completion_tokens=50),
        billable=True,
        usage_estimated=True,
    )


async def test_entries_name_their_key_and_the_report_breaks_usage_down_by_key(db_url: str) -> None:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    policy = price_sheet()
    try:
        await record_usage(sessions, event_id="e1", completed=completed("t1", api_key_id="k1"), policy=policy)
        await record_usage(sessions, event_id="e2", completed=completed("t2", api_key_id="k2"), policy=policy)
        await record_usage(sessions, event_id="e3", completed=completed("t3", api_key_id="k2"), policy=policy)
        await record_call_usage(sessions, event_id="c1", call=_call("t3", "k2"), policy=policy)
        async with sessions() as session:
            entries = {
                e.task_id: e.api_key_id for e in (await session.execute(sa.select(UsageEntry))).scalars()
            }
            call = (await session.execute(sa.select(CallUsageEntry))).scalar_one()
        assert entries == {"t1": "k1", "t2": "k2", "t3": "k2"}
        assert call.api_key_id == "k2"

        query = UsageQuery(tenant_id="acme", start=TODAY, end=TODAY, group_by=["key", "kind"])
        report = await usage_report(sessions, query)
        by_key = {(r.api_key_id, r.kind): (r.requests, r.cost_usd) for r in report.rows}
        task_cost = Decimal("0.0094950000")  # 1,500 prompt and 333 completion tokens of Sonnet 4.6
        assert by_key == {
            ("k1", "task"): (1, task_cost),
            ("k2", "call"): (1, Decimal("0.0010500000")),
            ("k2", "task"): (2, 2 * task_cost),
        }
        only = await usage_report(
            sessions, UsageQuery(tenant_id="acme", start=TODAY, end=TODAY, api_key_id="k1")
        )
        assert only.totals.requests == 1 and only.totals.cost_usd == task_cost
        header, first, *_ = usage_csv(report).splitlines()
        assert header.startswith("key,kind,requests") and first.startswith("k1,task,1,")
    finally:
        await engine.dispose()


async def test_bi0009_leaves_earlier_entries_without_a_key_and_its_downgrade_sums_the_keys(
    db_url: str,
) -> None:
    await migrations().upgrade(db_url, "bi0008")
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    day = date(2026, 12, 5)
    row = {
        "tenant_id": "acme",
        "day": day,
        "user_id": "u1",
        "model": "openai/gpt-5-mini",
        "tier": "fast",
        "kind": "task",
        "requests": 2,
        "prompt_tokens": 20,
        "completion_tokens": 4,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_e10": 700,
        "unpriced": 0,
        "estimated": 0,
    }
    old_daily = sa.table("usage_daily", *(sa.column(c, UsageDaily.__table__.c[c].type) for c in row))
    try:
        async with sessions() as session, session.begin():
            await session.execute(sa.insert(old_daily).values(**row))
        await migrations().upgrade(db_url)
        async with sessions() as session, session.begin():
            kept = (await session.execute(sa.select(UsageDailyKey))).scalar_one()
            assert (kept.api_key_id, kept.requests, kept.cost_e10) == ("", 2, 700)
            # the same user, model, tier and day under a key: a row of its own (bi0010: in usage_daily_keys)
            await session.execute(
                sa.insert(UsageDailyKey).values(**{**row, "api_key_id": "k1", "requests": 1})
            )
            await session.execute(sa.update(UsageDaily).values(requests=3, cost_e10=1400))
        report = await usage_report(
            sessions, UsageQuery(tenant_id="acme", start=day, end=day, group_by=["key"])
        )
        assert [(r.api_key_id, r.requests) for r in report.rows] == [(None, 2), ("k1", 1)]

        await migrations().downgrade(db_url, "bi0008")
        async with sessions() as session:
            rows = (await session.execute(sa.text("SELECT requests, cost_e10 FROM usage_daily"))).all()
        assert [tuple(r) for r in rows] == [(3, 1400)]
    finally:
        await engine.dispose()


async def test_the_migrations_warn_nothing_on_a_new_database(db_url: str) -> None:
    """`make run`'s first start printed SQLAlchemy's warning about bi0009's new primary key on SQLite (the
    rebuilt table's primary key replaced, as intended) to the user's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SAWarning)
        await migrations().upgrade(db_url)
        await migrations().downgrade(db_url, "bi0008")
        await migrations().upgrade(db_url)
