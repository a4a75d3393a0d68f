"""Aggregates, usage reports, statements, savings and budget alerts on real SQLite and PostgreSQL: exact
decimals, each entry counted once however often it arrives, and a statement that reconciles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.billing import alerts, spend
from switchyard.billing.calls import record_call_usage
from switchyard.billing.db import migrations
from switchyard.billing.models import BudgetAlert, UsageDaily
from switchyard.billing.reports import usage_report
from switchyard.billing.service import record_usage
from switchyard.billing.statements import monthly_statement
from switchyard.common.billing_rpc import (
    DayCost,
    ForecastQuery,
    SavingsQuery,
    StatementQuery,
    UsageQuery,
    statement_csv,
)
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import ProviderCallRecorded, TaskCompleted, Usage
from tests.support.prices import price_sheet

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]
POLICY = price_sheet()


def _done(
    task_id: str, *, model: str, tier: str, user: str | None, prompt: int, completion: int
) -> TaskCompleted:
    return TaskCompleted(
        task_id=task_id,
        tenant_id="acme",
        user_id=user,
        model=model,
        provider=model.split("/")[0],
        tier=tier,
        content="ok",
        finish_reason="stop",
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        attempts=1,
        latency_ms=5.0,
        completed_at=datetime.now(UTC),
    )


def _call(
    task_id: str,
    *,
    prompt: int,
    completion: int,
    attempt: int = 1,
    user: str | None = None,
    outcome: str = "ok",
) -> ProviderCallRecorded:
    """A billable call of gpt-4o-mini besides task `task_id`'s answer (a race's loser, say)."""
    return ProviderCallRecorded(
        task_id=task_id,
        tenant_id="acme",
        user_id=user,
        attempt=attempt,
        provider="openai",
        model="openai/gpt-4o-mini",
        outcome=outcome,
        latency_ms=3.0,
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        billable=True,
    )


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, 0, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[Sessions]:
    await migrations().upgrade(db_url)
    engine: AsyncEngine = create_engine(db_url)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


async def _seed(sessions: Sessions) -> list[Decimal]:
    """A month of mixed usage; returns each entry's cost as billed."""
    costs: list[Decimal] = []
    # Prices with many decimal places, so float storage would show: 7 tokens of gpt-4o-mini etc.
    plan = [
        ("a1", "openai/gpt-4o-mini", "fast", "u1", 7, 3, 3),
        ("a2", "openai/gpt-4o-mini", "fast", "u1", 1234, 567, 3),
        ("a3", "anthropic/claude-sonnet-4-6", "standard", "u2", 1500, 333, 4),
        ("a4", "anthropic/claude-sonnet-4-6", "standard", None, 11, 13, 4),
        ("a5", "openai/not-in-the-policy", "fast", "u2", 100, 100, 20),
        ("b1", "openai/gpt-4o-mini", "fast", "u1", 999, 1, 30),  # the last day of the month
    ]
    for task, model, tier, user, p, c, day in plan:
        done = _done(task, model=model, tier=tier, user=user, prompt=p, completion=c)
        for _ in range(3):  # redelivered: counted once
            rec = await record_usage(
                sessions, event_id=f"ev-{task}", completed=done, policy=POLICY, clock=lambda d=day: _at(d)
            )
        costs.append(rec.entry.cost_usd)
    call = _call("a3", prompt=321, completion=17)
    for _ in range(2):
        got = await record_call_usage(
            sessions, event_id="call-1", call=call, policy=POLICY, clock=lambda: _at(4)
        )
    costs.append(got.entry.cost_usd)
    # Another organisation and another month never show up in acme's November.
    other = _done("x1", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=5000, completion=5000)
    other = other.model_copy(update={"tenant_id": "globex"})
    await record_usage(sessions, event_id="ev-x1", completed=other, policy=POLICY, clock=lambda: _at(4))
    december = _done("d1", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=10, completion=10)
    await record_usage(
        sessions,
        event_id="ev-d1",
        completed=december,
        policy=POLICY,
        clock=lambda: datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC),
    )
    return costs


async def test_aggregates_count_each_entry_once_and_exactly(sessions: Sessions) -> None:
    costs = await _seed(sessions)
    report = await usage_report(
        sessions, UsageQuery(tenant_id="acme", start=date(2026, 11, 1), end=date(2026, 11, 30), group_by=[])
    )
    assert report.totals.requests == 7  # 6 tasks + 1 billable call, each once
    assert report.totals.cost_usd == sum(costs, Decimal(0))
    assert report.totals.unpriced == 1
    async with sessions() as session:
        rows = (await session.execute(select(func.count()).select_from(UsageDaily))).scalar_one()
    assert rows >= 6

    by_user = await usage_report(
        sessions,
        UsageQuery(tenant_id="acme", start=date(2026, 11, 1), end=date(2026, 11, 30), group_by=["user"]),
    )
    users = {r.user_id: r.requests for r in by_user.rows}
    assert users == {None: 2, "u1": 3, "u2": 2}  # the call and the service key's task have no user

    filtered = await usage_report(
        sessions,
        UsageQuery(
            tenant_id="acme",
            start=date(2026, 11, 3),
            end=date(2026, 11, 4),
            model="openai/gpt-4o-mini",
            group_by=["day", "kind"],
        ),
    )
    assert [(r.day, r.kind, r.requests) for r in filtered.rows] == [
        (date(2026, 11, 3), "task", 2),
        (date(2026, 11, 4), "call", 1),
    ]

    months = await usage_report(
        sessions,
        UsageQuery(
            tenant_id="acme", start=date(2026, 10, 1), end=date(2026, 12, 31), group_by=["month", "tier"]
        ),
    )
    assert [(r.month, r.tier, r.requests) for r in months.rows] == [
        ("2026-11", "call", 1),
        ("2026-11", "fast", 4),
        ("2026-11", "standard", 2),
        ("2026-12", "fast", 1),
    ]


async def test_statement_reconciles_with_the_entries(sessions: Sessions) -> None:
    costs = await _seed(sessions)
    statement = await monthly_statement(sessions, StatementQuery(tenant_id="acme", month="2026-11"))
    assert statement.reconciled and statement.entries == 7
    assert statement.totals.cost_usd == statement.entries_cost_usd == sum(costs, Decimal(0))
    assert sum((line.cost_usd for line in statement.lines), Decimal(0)) == statement.totals.cost_usd
    keys = [(line.model, line.tier, line.kind) for line in statement.lines]
    assert ("openai/gpt-4o-mini", "call", "call") in keys and len(keys) == len(set(keys))
    mini = next(
        line for line in statement.lines if line.model == "openai/gpt-4o-mini" and line.kind == "task"
    )
    assert (mini.requests, mini.prompt_tokens, mini.completion_tokens) == (3, 7 + 1234 + 999, 3 + 567 + 1)

    # Tampering with an aggregate shows as a failed reconciliation.
    async with sessions() as session, session.begin():
        await session.execute(text("UPDATE usage_daily SET cost_e10 = cost_e10 + 1 WHERE tenant_id = 'acme'"))
    assert not (
        await monthly_statement(sessions, StatementQuery(tenant_id="acme", month="2026-11"))
    ).reconciled


async def test_savings_price_the_same_tokens_at_premium(sessions: Sessions) -> None:
    await _seed(sessions)
    report = await spend.savings(
        sessions,
        SavingsQuery(tenant_id="acme", start=date(2026, 11, 1), end=date(2026, 11, 30)),
        policy=POLICY,
    )
    reference = POLICY.in_tier("premium")[0]
    assert report.premium_model == reference.id
    fast = next(line for line in report.lines if line.tier == "fast")
    # gpt-4o-mini's tokens at the premium model; the unpriced model counts zero both ways.
    tokens_p, tokens_c = 7 + 1234 + 999, 3 + 567 + 1
    expected = (
        Decimal(tokens_p) * Decimal(str(reference.input_per_1k))
        + Decimal(tokens_c) * Decimal(str(reference.output_per_1k))
    ) / 1000
    assert fast.premium_usd == expected.quantize(Decimal("1e-10"))
    call = next(line for line in report.lines if line.tier == "call")
    assert call.premium_usd == 0 and call.paid_usd > 0  # no losers or retries under always-premium
    assert report.saved_usd == report.premium_usd - report.paid_usd > 0


async def test_budget_alerts_once_per_threshold_and_period(sessions: Sessions) -> None:
    # u1's daily budget: $0.001; the org's monthly: $1.
    limits = {("acme", "u1"): 1_000, ("acme", None): 1_000_000}

    async def limit(tenant: str, user: str | None) -> int | None:
        return limits.get((tenant, user))

    spent = Decimal(0)
    fired: list[int] = []
    for n in range(6):  # gpt-4o-mini: 1000 in + 500 out = $0.00045 per task
        done = _done(f"t{n}", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=1000, completion=500)
        rec = await record_usage(
            sessions, event_id=f"e{n}", completed=done, policy=POLICY, clock=lambda: _at(9)
        )
        spent += rec.entry.cost_usd
        for _ in range(2):  # a redelivery checks again: nothing new
            fired.append(
                await alerts.check(sessions, limit, tenant_id="acme", user_id="u1", day=date(2026, 11, 9))
            )
    assert sum(fired) == 3  # 50 % after 2 tasks ($0.0009 >= 0.0005), 80 % and 100 % after 3 ($0.00135)
    rows = await alerts.unpublished(sessions, tenant_id="acme")
    assert sorted((r.scope, r.account, r.period, r.threshold_pct) for r in rows) == [
        ("user", "u1", "20261109", 50),
        ("user", "u1", "20261109", 80),
        ("user", "u1", "20261109", 100),
    ]
    fifty = next(r for r in rows if r.threshold_pct == 50)
    assert alerts.alert_event(fifty).spent_usd == "0.0009000000"
    # The next day is a new period for the user's daily budget: one task of $0.00105 passes all three.
    done = _done("t9", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=1000, completion=1500)
    await record_usage(sessions, event_id="e9", completed=done, policy=POLICY, clock=lambda: _at(10))
    assert await alerts.check(sessions, limit, tenant_id="acme", user_id="u1", day=date(2026, 11, 10)) == 3
    await alerts.mark_published(sessions, alert_id=fifty.id)
    async with sessions() as session:
        published = (
            await session.execute(select(BudgetAlert.published).where(BudgetAlert.id == fifty.id))
        ).scalar_one()
    assert published is True


async def test_a_budget_changed_within_its_period_is_alerted_on_again(sessions: Sessions) -> None:
    """An admin raised the organisation's monthly budget after its alerts had fired: no 50, 80 or 100 %
    alert came for the new budget that month (an alert was once per threshold, account and period), and
    its requests were refused at the new ceiling unannounced. An alert is once per budget as well."""
    limits = {("acme", None): 1_000}  # $0.001 a month

    async def limit(tenant: str, user: str | None) -> int | None:
        return limits.get((tenant, user))

    async def task(n: int) -> None:  # $0.00045 each
        done = _done(f"b{n}", model="openai/gpt-4o-mini", tier="fast", user=None, prompt=1000, completion=500)
        await record_usage(sessions, event_id=f"b{n}", completed=done, policy=POLICY, clock=lambda: _at(9))

    def check() -> Awaitable[int]:
        return alerts.check(sessions, limit, tenant_id="acme", user_id=None, day=date(2026, 11, 9))

    for n in range(3):
        await task(n)
    assert await check() == 3  # $0.00135 of $0.001
    first = {r.threshold_pct: r.id for r in await alerts.unpublished(sessions, tenant_id="acme")}
    for alert_id in first.values():
        await alerts.mark_published(sessions, alert_id=alert_id)

    limits[("acme", None)] = 2_000  # raised to $0.002: $0.00135 is 67.5 % of it
    assert await check() == 1
    assert await check() == 0  # once
    (fifty,) = await alerts.unpublished(sessions, tenant_id="acme")
    event = alerts.alert_event(fifty)
    assert (event.threshold_pct, event.limit_usd, event.spent_usd) == (50, "0.0020000000", "0.0013500000")
    assert fifty.id not in first.values()  # a new event id: a receiver de-duplicating on it takes it
    await alerts.mark_published(sessions, alert_id=fifty.id)
    await task(3)  # $0.0018: 90 %
    assert await check() == 1
    (eighty,) = await alerts.unpublished(sessions, tenant_id="acme")
    assert eighty.threshold_pct == 80 and eighty.limit_e10 == 2_000 * alerts.MICRO_TO_E10


async def test_concurrent_deliveries_of_one_result_count_it_once(sessions: Sessions) -> None:
    import asyncio

    done = _done("race", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=1000, completion=1000)
    results = await asyncio.gather(
        *(
            record_usage(sessions, event_id="ev-race", completed=done, policy=POLICY, clock=lambda: _at(7))
            for _ in range(8)
        )
    )
    assert sum(r.created for r in results) == 1
    report = await usage_report(
        sessions, UsageQuery(tenant_id="acme", start=date(2026, 11, 7), end=date(2026, 11, 7), group_by=[])
    )
    assert report.totals.requests == 1 and report.totals.cost_usd == Decimal("0.0007500000")


async def test_the_monthly_budget_counts_every_user_and_extra_calls(sessions: Sessions) -> None:
    async def limit(tenant: str, user: str | None) -> int | None:
        return 2_000 if (tenant, user) == ("acme", None) else None  # $0.002 a month for the organisation

    for n, user in enumerate(("u1", "u2", None)):  # $0.00045 each, on different days: 67.5 % in all
        done = _done(f"m{n}", model="openai/gpt-4o-mini", tier="fast", user=user, prompt=1000, completion=500)
        await record_usage(
            sessions, event_id=f"m{n}", completed=done, policy=POLICY, clock=lambda d=n: _at(d + 1)
        )
        await alerts.check(sessions, limit, tenant_id="acme", user_id=user, day=date(2026, 11, n + 1))
    rows = await alerts.unpublished(sessions, tenant_id="acme")
    assert [(r.scope, r.account, r.period, r.threshold_pct) for r in rows] == [("org", "acme", "202611", 50)]
    call = _call("m0", prompt=1000, completion=500, attempt=2)
    await record_call_usage(sessions, event_id="m-call", call=call, policy=POLICY, clock=lambda: _at(20))
    assert await alerts.check(sessions, limit, tenant_id="acme", user_id=None, day=date(2026, 11, 20)) == 1
    assert (
        alerts.alert_event((await alerts.unpublished(sessions, tenant_id="acme"))[-1]).spent_usd
        == "0.0018000000"
    )
    # December is a new period.
    assert await alerts.check(sessions, limit, tenant_id="acme", user_id=None, day=date(2026, 12, 1)) == 0


async def test_estimated_counts_are_flagged_and_counted_in_the_report(sessions: Sessions) -> None:
    """A task whose usage the upstream did not report is flagged on its entry and counted as `estimated`
    in its day, as a cut call's is; counted ones are not."""
    estimated = _done("e1", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=40, completion=8)
    estimated = estimated.model_copy(update={"usage_estimated": True})
    counted = _done("e2", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=40, completion=8)
    for event_id, done in (("ev-e1", estimated), ("ev-e2", counted)):
        for _ in range(2):  # redelivered: counted once
            rec = await record_usage(
                sessions, event_id=event_id, completed=done, policy=POLICY, clock=lambda: _at(5)
            )
        assert rec.entry.usage_estimated == done.usage_estimated
    cut = ProviderCallRecorded(
        task_id="e2",
        tenant_id="acme",
        attempt=1,
        provider="openai",
        model="openai/gpt-4o-mini",
        outcome="cancelled",
        latency_ms=3.0,
        usage=Usage(prompt_tokens=40, completion_tokens=2),
        billable=True,
        usage_estimated=True,
    )
    await record_call_usage(sessions, event_id="call-cut", call=cut, policy=POLICY, clock=lambda: _at(5))
    report = await usage_report(
        sessions,
        UsageQuery(tenant_id="acme", start=date(2026, 11, 5), end=date(2026, 11, 5), group_by=["kind"]),
    )
    assert [(r.kind, r.requests, r.estimated) for r in report.rows] == [("call", 1, 1), ("task", 2, 1)]
    assert report.totals.estimated == 2
    statement = await monthly_statement(sessions, StatementQuery(tenant_id="acme", month="2026-11"))
    assert sorted((line.kind, line.estimated) for line in statement.lines) == [("call", 1), ("task", 1)]
    assert statement.totals.estimated == 2 and statement.reconciled
    header, *_, total = statement_csv(statement).splitlines()
    assert header.endswith(",cost_usd,estimated") and total.endswith(",2")


async def test_a_forecast_as_of_the_first_day_there_is_answers(sessions: Sessions) -> None:
    """Its trailing window reaches before 1970-01-01, the first day a query may name (it was a 500)."""
    doc = await spend.forecast(
        sessions, ForecastQuery(tenant_id="acme", as_of=date(1970, 1, 1), window_days=90)
    )
    assert doc.spent_to_date_usd == 0 and doc.daily == [DayCost(day=date(1970, 1, 1), cost_usd=Decimal(0))]


async def test_a_users_extra_calls_are_their_spend(sessions: Sessions) -> None:
    """A race's loser of u1's task is u1's spend, as the gateway counts it in u1's daily budget: in the
    usage report by user and in u1's budget alerts (they were charged to no user)."""

    async def limit(tenant: str, user: str | None) -> int | None:
        return 1_000 if (tenant, user) == ("acme", "u1") else None  # u1: $0.001 a day

    done = _done("r1", model="openai/gpt-4o-mini", tier="fast", user="u1", prompt=1000, completion=500)
    await record_usage(sessions, event_id="r1", completed=done, policy=POLICY, clock=lambda: _at(12))
    loser = _call("r1", prompt=1000, completion=500, attempt=2, user="u1", outcome="cancelled")
    call = await record_call_usage(
        sessions, event_id="r1-call", call=loser, policy=POLICY, clock=lambda: _at(12)
    )
    assert call.entry.user_id == "u1"
    report = await usage_report(
        sessions,
        UsageQuery(tenant_id="acme", start=date(2026, 11, 12), end=date(2026, 11, 12), group_by=["user"]),
    )
    assert [(r.user_id, r.requests, r.cost_usd) for r in report.rows] == [("u1", 2, Decimal("0.0009"))]
    # $0.0009 of $0.001: 50 and 80 % (the task alone, $0.00045, passed none)
    assert await alerts.check(sessions, limit, tenant_id="acme", user_id="u1", day=date(2026, 11, 12)) == 2
