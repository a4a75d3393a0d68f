"""A consumer whose database is down keeps its events on the stream until the database is back, on a real
nats-server and a real PostgreSQL stopped under it. Before, billing's and audit's consumers dead-lettered
every event of an outage longer than their redeliveries (~20 minutes) and each waited for an operator's
`switchyard dlq replay`; here the consumer's own limit is two deliveries and the event outlives many more.
A handler's own failure is still dead-lettered after `max_deliver`."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy import text

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, db, dlq, subjects
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import TaskSubmitted
from tests.support.postgres import started_cluster
from tests.support.probe import start_probe
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration


def _consumer(durable: str) -> subjects.Consumer:
    return subjects.Consumer(durable, subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED, max_deliver=2)


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_an_outage_longer_than_the_redeliveries_loses_nothing_and_dead_letters_nothing(
    nats_server: NatsServer,
) -> None:
    with started_cluster() as cluster:
        engine = db.create_engine(cluster.url())
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE handled (event_id text PRIMARY KEY, delivery int)"))
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await bus.ensure_streams(js)
        consumer = _consumer("outage-ride-probe")
        # the durable as a release before this one made it: its server-side limit is max_deliver itself
        await js.add_consumer(
            subjects.STREAM_EVENTS,
            ConsumerConfig(
                durable_name=consumer.durable,
                filter_subject=consumer.filter_subject,
                ack_policy=AckPolicy.EXPLICIT,
                max_deliver=consumer.max_deliver,
            ),
        )
        tries: list[int] = []

        async def handler(event: CloudEvent, payload: TaskSubmitted) -> None:
            tries.append(bus.delivery())
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO handled VALUES (:id, :delivery) ON CONFLICT DO NOTHING"),
                    {"id": event.id, "delivery": bus.delivery()},
                )

        broker, publisher = await start_probe(
            nats_server.url, consumer, "probe", handler, expected=[TaskSubmitted], outage=db.unreachable
        )
        try:
            info = await js.consumer_info(subjects.STREAM_EVENTS, consumer.durable)
            # brought up to date by the start
            assert info.config.max_deliver == bus.outage_deliveries(consumer.max_deliver)
            cluster.stop(mode="fast")
            event_id = await publisher.publish(hello_task("t-outage"), tenant_id="acme")

            async def outlived_its_limit() -> bool:
                return len(tries) >= consumer.max_deliver + 3

            await _until(outlived_its_limit)  # 0.5 + 1 + 2 + 4 s of backoff
            assert [x async for x in dlq.scan(js, service="probe")] == []
            cluster.start_server()

            async def written() -> bool:
                try:
                    async with engine.connect() as conn:
                        rows = (await conn.execute(text("SELECT event_id, delivery FROM handled"))).all()
                except Exception:
                    return False
                return bool(rows)

            await _until(written, timeout=60.0)  # the next try comes at most 30 s after the last
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT event_id, delivery FROM handled"))).all()
            assert [row[0] for row in rows] == [event_id]
            assert rows[0][1] > consumer.max_deliver  # handled on a delivery past the consumer's own limit

            async def settled() -> bool:
                state = await js.consumer_info(subjects.STREAM_EVENTS, consumer.durable)
                return state.num_ack_pending == 0 and state.num_pending == 0

            await _until(settled)
            assert [x async for x in dlq.scan(js, service="probe")] == []
        finally:
            await bus.stop_consumers(broker)
            await broker.stop()
            await nc.close()
            await engine.dispose()


async def test_a_handlers_own_failure_is_still_dead_lettered_after_max_deliver(
    nats_server: NatsServer,
) -> None:
    tries: list[int] = []

    async def handler(event: CloudEvent, payload: TaskSubmitted) -> None:
        tries.append(bus.delivery())
        raise ValueError("a bug, not an outage")

    consumer = _consumer("own-failure-probe")
    broker, publisher = await start_probe(
        nats_server.url, consumer, "probe", handler, expected=[TaskSubmitted], outage=db.unreachable
    )
    js = bus.jetstream(broker)
    try:
        await publisher.publish(hello_task("t-bug"), tenant_id="acme")

        async def dead_lettered() -> bool:
            return bool([x async for x in dlq.scan(js, service="probe")])

        await _until(dead_lettered)
        [letter] = [x async for x in dlq.scan(js, service="probe")]
        assert letter.code == "handler_error"
        assert "ValueError: a bug, not an outage" in letter.reason
        assert tries == [1, 2]
    finally:
        await bus.stop_consumers(broker)
        await broker.stop()
