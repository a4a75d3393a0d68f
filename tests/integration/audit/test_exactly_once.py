"""Exactly-once effect on real processes and a real nats-server: results published twice (under different
Nats-Msg-Ids) and once more under the same id, audit and billing killed with SIGKILL mid-batch and
restarted, redeliveries after the ack wait: every usage entry and every ledger entry exists exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.js import api
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.models import LedgerEntry
from switchyard.audit.verify import verify_ledger
from switchyard.billing.db import migrations as billing_migrations
from switchyard.billing.models import UsageEntry
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import encode
from switchyard.common.events import TaskCompleted, Usage
from tests.support import event_ids
from tests.support.bus_services import BusService

pytestmark = pytest.mark.integration

TASKS = 400
ACK_WAIT_S = 2.0
SIGNING_SEED = "11" * 32


@pytest.fixture
async def sessions(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await billing_migrations().upgrade(sqlite_url)
    await audit_migrations().upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


def _result(n: int) -> tuple[str, bytes]:
    completed = TaskCompleted(
        task_id=f"task-{n}",
        tenant_id="acme",
        model="local/smollm2-135m-instruct",
        provider="local",
        tier="local",
        content="an answer",
        finish_reason="stop",
        usage=Usage(prompt_tokens=10 + n, completion_tokens=5),
        attempts=1,
        latency_ms=12.0,
        completed_at=datetime.now(UTC),
    )
    return encode(completed, source="switchyard/executor", event_id=f"result-{n}", tenant_id="acme")


async def _count(sessions: async_sessionmaker[AsyncSession], column: object) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count(column)))).scalar_one())  # type: ignore[arg-type]


async def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)


async def test_kill_9_duplicates_and_redelivery_leave_each_entry_once(
    nats_server: NatsServer, sqlite_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    # Billing's durable consumer with a short ack wait (as an operator would configure it), so what a killed
    # process held is redelivered in seconds; audit takes it from its settings.
    consumer = subjects.BILLING_CONSUMER
    await js.add_consumer(
        consumer.stream,
        api.ConsumerConfig(
            durable_name=consumer.durable,
            filter_subject=consumer.filter_subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_deliver=consumer.max_deliver,
            max_ack_pending=1000,
        ),
    )
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        **event_ids.ENV,
        "SWITCHYARD_AUDIT_ACK_WAIT_S": str(ACK_WAIT_S),
        "SWITCHYARD_AUDIT_SIGNING_KEY": SIGNING_SEED,
        "SWITCHYARD_AUDIT_MAX_BATCH": "50",
        # Within the run's last quiet seconds, however fast billing settles (the default, 10 s, made the
        # checkpoint depend on how long the run took).
        "SWITCHYARD_AUDIT_CHECKPOINT_INTERVAL_S": "2",
    }
    audit = BusService("audit", env=env, log_path=tmp_path / "audit.log")
    billing = BusService("billing", env=env, log_path=tmp_path / "billing.log")
    await asyncio.gather(audit.start(), billing.start())
    publisher = bus.EventPublisher(js, source="test")
    try:
        for n in range(TASKS):
            event_id, body = _result(n)
            subject = subjects.result_subject("acme", f"task-{n}")
            await publisher.publish_raw(subject, body, msg_id=event_id)
            if n % 3 == 0:  # the same event again: JetStream drops it (same Nats-Msg-Id)
                await publisher.publish_raw(subject, body, msg_id=event_id)
            if n % 4 == 0:  # and under another Nats-Msg-Id: it gets through, the consumers drop it
                await publisher.publish_raw(subject, body, msg_id=f"{event_id}-again")
            if n == TASKS // 3:
                audit.kill()
                billing.kill()
                await asyncio.gather(audit.start(), billing.start())
            if n == 2 * TASKS // 3:
                billing.kill()  # mid-batch again, while audit keeps going
                await billing.start()

        async def settled() -> bool:
            usage = await _count(sessions, UsageEntry.id)
            entries = await _count(sessions, LedgerEntry.seq)
            return usage >= TASKS and entries >= 2 * TASKS

        await _until(settled, 90, "not every result was billed and recorded")
        await asyncio.sleep(2 * ACK_WAIT_S + 1)  # any late redelivery would land now
    finally:
        audit.stop()
        billing.stop()
        await nc.close()

    async with sessions() as session:
        usage = list((await session.execute(select(UsageEntry.task_id))).scalars())
        ledger = list(
            (await session.execute(select(LedgerEntry.event_id).order_by(LedgerEntry.seq))).scalars()
        )
    assert sorted(usage) == sorted(f"task-{n}" for n in range(TASKS))
    expected = {f"result-{n}" for n in range(TASKS)} | {
        event_ids.derived(f"result-{n}", "usage", tenant_id="acme") for n in range(TASKS)
    }
    assert len(ledger) == len(set(ledger)), "an event was recorded twice"
    assert set(ledger) == expected, f"missing {sorted(expected - set(ledger))[:5]}"
    report = await verify_ledger(sessions)
    assert report.ok and report.entries == 2 * TASKS and report.checkpoints >= 1
