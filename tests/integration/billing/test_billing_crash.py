"""Billing killed with SIGKILL while results and duplicates stream in: every entry is counted in the
aggregates exactly once, and each budget threshold is announced exactly once (real nats-server, SQLite)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import nats
import pytest
from nats.js import api
from sqlalchemy import func, select

from switchyard.billing.db import migrations
from switchyard.billing.models import BudgetAlert as AlertRow
from switchyard.billing.models import UsageDaily, UsageEntry
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.budgets import limit_key, limits_bucket, write_limit
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode, encode
from switchyard.common.events import BudgetAlert, TaskCompleted, Usage
from tests.support.bus_services import BusService
from tests.support.prices import PRICE_SHEET

pytestmark = pytest.mark.integration

TASKS = 60
ACK_WAIT_S = 2.0


def _result(n: int) -> tuple[str, bytes]:
    done = TaskCompleted(
        task_id=f"task-{n}",
        tenant_id="acme",
        user_id="u1",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content="ok",
        finish_reason="stop",
        usage=Usage(prompt_tokens=1000, completion_tokens=500),  # $0.00045
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )
    return encode(done, source="test", event_id=f"result-{n}", tenant_id="acme")


async def test_kill_9_leaves_aggregates_and_alerts_exactly_once(
    nats_server: NatsServer, sqlite_url: str, tmp_path: Path
) -> None:
    await migrations().upgrade(sqlite_url)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    consumer = subjects.BILLING_CONSUMER  # a short ack wait, so what the killed process held comes back soon
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
    await write_limit(await limits_bucket(js), limit_key("acme", "u1"), 10_000)  # $0.01 a day
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        "SWITCHYARD_POLICY_PATH": str(PRICE_SHEET),
    }
    billing = BusService("billing", env=env, log_path=tmp_path / "billing.log")
    await billing.start()
    publisher = bus.EventPublisher(js, source="test")
    engine = create_engine(sqlite_url)
    sessions = sessionmaker(engine)
    try:
        for n in range(TASKS):
            event_id, body = _result(n)
            await publisher.publish_raw(subjects.result_subject("acme", f"task-{n}"), body, msg_id=event_id)
            if n % 4 == 0:  # a duplicate under another Nats-Msg-Id: billing itself must drop it
                await publisher.publish_raw(
                    subjects.result_subject("acme", f"task-{n}"), body, msg_id=f"{event_id}-b"
                )
            if n in (TASKS // 4, TASKS // 2):  # around the 50 % and 80 % thresholds (tasks 12 and 18)
                billing.kill()
                await billing.start()

        deadline = time.monotonic() + 90
        while True:
            async with sessions() as session:
                entries = (await session.execute(select(func.count(UsageEntry.id)))).scalar_one()
                pending = (
                    await session.execute(
                        select(func.count(AlertRow.id)).where(AlertRow.published.is_(False))
                    )
                ).scalar_one()
            if entries >= TASKS and pending == 0:
                break
            assert time.monotonic() < deadline, f"{entries} entries, {pending} alerts unpublished"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2 * ACK_WAIT_S + 1)  # a late redelivery would land now

        async with sessions() as session:
            counted = (
                await session.execute(select(func.sum(UsageDaily.requests), func.sum(UsageDaily.cost_e10)))
            ).one()
            stored = (await session.execute(select(func.count(AlertRow.id)))).scalar_one()
        assert counted == (TASKS, TASKS * 4_500_000)  # $0.00045 = 4,500,000 x 1e-10
        assert stored == 3

        sub = await js.pull_subscribe(
            subjects.BUDGET_ALERT,
            stream=subjects.STREAM_EVENTS,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
        )
        seen: list[tuple[str, BudgetAlert]] = []
        try:
            while True:
                for msg in await sub.fetch(50, timeout=1.0):
                    event, payload = decode(msg.data, (BudgetAlert,))
                    assert isinstance(payload, BudgetAlert)
                    seen.append((event.id, payload))
        except (nats.errors.TimeoutError, TimeoutError):
            pass
        assert sorted(p.threshold_pct for _, p in seen) == [50, 80, 100]
        assert len({eid for eid, _ in seen}) == 3
        for _, alert in seen:  # each announced with the spend that crossed it, at least the threshold
            assert Decimal(alert.spent_usd) * 100 >= Decimal(alert.threshold_pct) * Decimal("0.01")
    finally:
        billing.stop()
        await engine.dispose()
        await nc.close()
