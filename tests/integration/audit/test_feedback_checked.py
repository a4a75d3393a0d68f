"""A rating published on the bus is kept only on a finished task of its organisation, as `POST /v1/feedback`
checks before it publishes: the audit service (as its own NATS user, on a bus with `switchyard up`'s
permissions) looks the task's result up on the events stream, and dead-letters a rating of no such task
(`task_not_found`), of another organisation's, or of one not finished yet; replayed once the task has
finished, the rating is kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client
from sqlalchemy import select

from switchyard.audit.db import migrations
from switchyard.audit.models import LedgerEntry
from switchyard.common import bus, dlq, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import TaskCompleted, TaskFeedback, Usage
from tests.support.bus_services import BusService
from tests.support.guarded_bus import GuardedBus
from tests.support.tasks import completed

pytestmark = pytest.mark.integration


def running_audit(guarded: GuardedBus, sqlite_url: str, tmp_path: Path) -> Iterator[Path]:
    """For a fixture: the audit service as its own user on `guarded`, on a migrated `sqlite_url`; its log."""
    asyncio.run(migrations().upgrade(sqlite_url))
    log = tmp_path / "audit.log"
    env = {
        **guarded.env("audit"),
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_AUDIT_SIGNING_KEY": "22" * 32,
    }
    service = BusService("audit", env=env, log_path=log, ping_url=guarded.operator_url)
    for _ in service.running():
        yield log


@pytest.fixture
def audit_log(guarded: GuardedBus, sqlite_url: str, tmp_path: Path) -> Iterator[Path]:
    yield from running_audit(guarded, sqlite_url, tmp_path)


def _answer(task_id: str, tenant_id: str) -> TaskCompleted:
    return completed(
        task_id,
        tenant_id,
        content="Paris",
        model="local/smollm2-135m-instruct",
        provider="local",
        tier="local",
        usage=Usage(prompt_tokens=5, completion_tokens=1),
        latency_ms=10.0,
    )


def _rating(task_id: str, tenant_id: str) -> TaskFeedback:
    return TaskFeedback(task_id=task_id, tenant_id=tenant_id, rating="bad", at=datetime.now(UTC))


async def _rated(db_url: str, expected: int, timeout: float = 30.0) -> list[tuple[str, str]]:
    """(tenant, resource) of the ledger's feedback entries, once there are `expected` (or at the timeout)."""
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with sessionmaker(engine)() as session:
                rows = (
                    await session.execute(
                        select(LedgerEntry.tenant_id, LedgerEntry.resource)
                        .where(LedgerEntry.action == "task.feedback")
                        .order_by(LedgerEntry.seq)
                    )
                ).all()
            if len(rows) >= expected or time.monotonic() > deadline:
                return [(r[0], r[1]) for r in rows]
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def _letters(nc: Client, expected: int, timeout: float = 30.0) -> list[dlq.DeadLetter]:
    deadline = time.monotonic() + timeout
    while True:
        found = [x async for x in dlq.scan(nc.jetstream(), service="audit")]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_a_rating_is_kept_only_on_a_finished_task_of_its_organisation(
    guarded: GuardedBus, audit_log: Path, sqlite_url: str
) -> None:
    executor, gateway = await guarded.connect("executor"), await guarded.connect("gateway")
    operator = await guarded.connect("operator")
    try:
        answers = bus.EventPublisher(executor.jetstream(), source="switchyard/executor")
        ratings = bus.EventPublisher(gateway.jetstream(), source="switchyard/gateway")
        await answers.publish(_answer("t1", "acme"), subject=subjects.result_subject("acme", "t1"))
        # answered by an executor of the release before tenant tokens, on `result.<task_id>`
        await answers.publish(_answer("t2", "acme"), subject=subjects.legacy_result_subject("t2"))

        for task_id, tenant_id in [("t1", "acme"), ("t2", "acme"), ("t1", "globex"), ("t2", "globex")]:
            await ratings.publish(_rating(task_id, tenant_id), tenant_id=tenant_id, event_subject=task_id)
        await ratings.publish(_rating("t3", "acme"), tenant_id="acme", event_subject="t3")

        assert await _rated(sqlite_url, 2) == [("acme", "task/t1"), ("acme", "task/t2")]
        letters = await _letters(operator, 3)
        assert sorted((x.code, x.consumer) for x in letters) == [("task_not_found", "audit")] * 3
        reasons = sorted(x.reason for x in letters)
        assert "feedback on task 't1', which has no result for organisation 'globex'" in reasons[0]
        assert "feedback on task 't2', which has no result for organisation 'globex'" in reasons[1]
        assert "feedback on task 't3', which has no result for organisation 'acme'" in reasons[2]

        # t3 finishes after its rating came: replayed, the rating is kept, and only that one
        await answers.publish(_answer("t3", "acme"), subject=subjects.result_subject("acme", "t3"))
        [early] = [x for x in letters if "'t3'" in x.reason]
        replayed = await dlq.replay(operator.jetstream(), early.seq)
        assert replayed.published
        assert await _rated(sqlite_url, 3) == [("acme", "task/t1"), ("acme", "task/t2"), ("acme", "task/t3")]
        await asyncio.sleep(0.5)  # a rating kept twice, or a letter kept, would show by now
        assert len(await _rated(sqlite_url, 4, timeout=0.5)) == 3
        assert len(await _letters(operator, 3, timeout=0.1)) == 2
    finally:
        for nc in (executor, gateway, operator):
            await nc.close()
    guarded.assert_clean(audit_log)
