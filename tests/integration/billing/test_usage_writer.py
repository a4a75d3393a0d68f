"""The batched usage writer on real SQLite and PostgreSQL: a batch is one transaction, and every task is
still charged once, in the entries and in the daily aggregates, whatever arrives twice and from where."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing.db import migrations
from switchyard.billing.models import UsageDaily, UsageEntry
from switchyard.billing.service import record_usage
from switchyard.billing.writer import UsageWriter
from switchyard.common.db import create_engine, sessionmaker
from tests.integration.billing.test_usage_db import completed
from tests.support.prices import price_sheet

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[Sessions]:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


async def _totals(sessions: Sessions) -> tuple[int, int, int]:
    """(entries, requests counted in the daily rows, prompt tokens counted in the daily rows)."""
    async with sessions() as session:
        entries = (await session.execute(select(func.count()).select_from(UsageEntry))).scalar_one()
        requests, prompt = (
            await session.execute(
                select(
                    func.coalesce(func.sum(UsageDaily.requests), 0),
                    func.coalesce(func.sum(UsageDaily.prompt_tokens), 0),
                )
            )
        ).one()
    return int(entries), int(requests), int(prompt)


async def test_a_batch_charges_each_task_once_however_often_it_arrives(sessions: Sessions) -> None:
    policy = price_sheet()
    writer = UsageWriter(sessions, policy=policy, linger_s=0.2)
    writer.start()
    try:
        await record_usage(sessions, event_id="e-old", completed=completed("t-old"), policy=policy)
        # One batch: ten tasks, one of them twice (two deliveries at once), one charged before.
        arrivals = [("e-new", "t-old")] + [(f"e{n}", f"t{n}") for n in range(10)] + [("e3-again", "t3")]
        recorded = await asyncio.gather(
            *(writer.record(event_id=e, completed=completed(t)) for e, t in arrivals)
        )
    finally:
        await writer.stop()
    assert [r.created for r in recorded] == [False] + [True] * 10 + [False]
    assert recorded[0].entry.event_id == "e-old"  # the stored charge, not a second one
    assert recorded[-1].entry.id == recorded[4].entry.id  # both deliveries of t3 got the same entry
    assert await _totals(sessions) == (11, 11, 11 * 1500)  # entries and aggregates agree: once each


async def test_a_charge_stored_meanwhile_by_another_replica_is_kept_not_doubled(sessions: Sessions) -> None:
    policy = price_sheet()
    writers = [UsageWriter(sessions, policy=policy, linger_s=0.05) for _ in range(2)]
    for w in writers:
        w.start()
    try:
        # The same results reach two replicas at the same time: their batches collide on the unique task
        # id, and the loser settles each entry on its own.
        recorded = await asyncio.gather(
            *(w.record(event_id=f"e{n}", completed=completed(f"t{n}")) for n in range(8) for w in writers)
        )
    finally:
        for w in writers:
            await w.stop()
    assert sum(r.created for r in recorded) == 8
    assert await _totals(sessions) == (8, 8, 8 * 1500)


async def test_two_organisations_tasks_of_one_id_are_each_charged(sessions: Sessions) -> None:
    """Other systems choose their tasks' ids on the bus (`job-1`): a task of globex with the id of one of
    acme's already charged is its own task, charged to globex, alone or in a batch; a redelivery of either
    is still charged once."""
    policy = price_sheet()
    first = await record_usage(sessions, event_id="e-acme", completed=completed("job-1"), policy=policy)
    alone = await record_usage(
        sessions, event_id="e-globex", completed=completed("job-1", tenant_id="globex"), policy=policy
    )
    writer = UsageWriter(sessions, policy=policy, linger_s=0.2)
    writer.start()
    try:
        batched = await asyncio.gather(
            writer.record(event_id="e-initech", completed=completed("job-1", tenant_id="initech")),
            writer.record(event_id="e-acme-again", completed=completed("job-1")),
            writer.record(event_id="e-globex-again", completed=completed("job-1", tenant_id="globex")),
        )
    finally:
        await writer.stop()
    assert first.created and alone.created and alone.entry.tenant_id == "globex"
    assert [(r.created, r.entry.tenant_id) for r in batched] == [
        (True, "initech"),
        (False, "acme"),
        (False, "globex"),
    ]
    assert await _totals(sessions) == (3, 3, 3 * 1500)
