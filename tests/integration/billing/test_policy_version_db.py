"""The policy version on usage entries, on real SQLite and PostgreSQL: bi0007 adds the column (entries
stored before keep NULL), the batched writer prices each batch by the policy in force and records its
version, and a task charged before a repricing keeps its first charge when its result comes again."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from switchyard.billing.calls import record_call_usage
from switchyard.billing.db import migrations
from switchyard.billing.models import CallUsageEntry, UsageEntry
from switchyard.billing.writer import UsageWriter
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import ProviderCallRecorded, Usage
from switchyard.common.policy_source import PolicySource
from tests.integration.billing.test_usage_db import completed
from tests.support.prices import write_price_sheet
from tests.unit.billing.test_policy_in_force import MINI, Clock

pytestmark = pytest.mark.integration


def _old_row(table: sa.Table, **values: object) -> sa.Insert:
    """An insert of the columns a revision before bi0007 had: all but policy_version."""
    old = sa.table(table.name, *(sa.column(c, table.c[c].type) for c in values))
    return sa.insert(old).values(**values)


async def test_bi0007_adds_the_policy_version_and_leaves_earlier_entries_without_one(db_url: str) -> None:
    await migrations().upgrade(db_url, "bi0006")
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    at = datetime(2026, 12, 5, 9, tzinfo=UTC)
    common = {"tenant_id": "acme", "model": MINI, "provider": "openai", "prompt_tokens": 10}
    try:
        async with sessions() as session, session.begin():
            await session.execute(
                _old_row(
                    UsageEntry.__table__,
                    id="u1",
                    task_id="t1",
                    event_id="e1",
                    user_id="u1",
                    tier="fast",
                    completion_tokens=1,
                    cost_usd=Decimal("0.0000021"),
                    priced=True,
                    usage_estimated=False,
                    created_at=at,
                    **common,
                )
            )
            await session.execute(
                _old_row(
                    CallUsageEntry.__table__,
                    id="c1",
                    event_id="call-1",
                    task_id="t1",
                    outcome="cancelled",
                    completion_tokens=0,
                    usage_estimated=True,
                    cost_usd=Decimal("0.0000015"),
                    priced=True,
                    created_at=at,
                    **common,
                )
            )
        await migrations().upgrade(db_url)
        async with sessions() as session:
            entry = (await session.execute(sa.select(UsageEntry))).scalar_one()
            call = (await session.execute(sa.select(CallUsageEntry))).scalar_one()
        assert (entry.task_id, entry.cost_usd, entry.policy_version) == ("t1", Decimal("0.0000021"), None)
        assert (call.event_id, call.policy_version) == ("call-1", None)

        await migrations().downgrade(db_url, "bi0006")  # and back: the column goes, the rows stay
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("usage_entries")}
            )
            kept = (await conn.execute(sa.text("SELECT count(*) FROM call_usage_entries"))).scalar_one()
        assert "policy_version" not in columns and "usage_estimated" in columns and kept == 1
    finally:
        await engine.dispose()


async def test_each_batch_and_call_is_priced_by_the_policy_in_force(db_url: str, tmp_path: Path) -> None:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    path = write_price_sheet(tmp_path / "policy.yaml", version="before")
    clock = Clock()
    policies = PolicySource(path, check_s=1.0, clock=clock)
    writer = UsageWriter(sessions, policy=policies)
    writer.start()
    try:
        first = await writer.record(event_id="e1", completed=completed("t1", MINI))
        write_price_sheet(path, version="after", prices={MINI: 0.0012})  # output price doubled
        clock.now += 1.0
        second = await writer.record(event_id="e2", completed=completed("t2", MINI))
        again = await writer.record(event_id="e1", completed=completed("t1", MINI))  # redelivered
        call = ProviderCallRecorded(
            task_id="t2",
            tenant_id="acme",
            attempt=1,
            provider="openai",
            model=MINI,
            outcome="cancelled",
            latency_ms=5.0,
            usage=Usage(prompt_tokens=1500, completion_tokens=333),
            billable=True,
        )
        charged = await record_call_usage(sessions, event_id="call-1", call=call, policy=policies.current())
        async with sessions() as session:
            stored = {
                e.task_id: (e.cost_usd, e.policy_version)
                for e in (await session.execute(sa.select(UsageEntry))).scalars()
            }
            stored_call = (await session.execute(sa.select(CallUsageEntry))).scalar_one()
    finally:
        await writer.stop()
        await engine.dispose()
    # 1,500 x 0.00015/1K + 333 x 0.0006/1K, then x 0.0012/1K for the output
    assert stored == {
        "t1": (Decimal("0.0004248000"), "before"),
        "t2": (Decimal("0.0006246000"), "after"),
    }
    assert (first.created, second.created, again.created) == (True, True, False)
    assert (again.entry.cost_usd, again.entry.policy_version) == (Decimal("0.0004248000"), "before")
    assert charged.created and (stored_call.cost_usd, stored_call.policy_version) == (
        Decimal("0.0006246000"),
        "after",
    )
