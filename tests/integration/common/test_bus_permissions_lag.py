"""Each service's NATS user under the embedded run's permissions (`cli/bus_permissions.py`) reads its own
consumers' lag, and the ages are right: the oldest unacked and the oldest waiting event's age, read through
a consumer of its own on the durable's filter (`lag-<durable>`, headers only, deleted after; real
nats-server). `switchyard up` once found the billing user refused its lag under load (a permissions
violation every 10 s, the gauges never set); since then the reading moved off the message get, which let
every such user read any event of the stream (test_bus_permissions_reads.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.js import api

from switchyard.common import bus, lag, metrics, subjects
from switchyard.common.events import TaskTimedOut
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration

EVENTS = subjects.STREAM_EVENTS


def _gauge(gauge: metrics.Gauge, consumer: subjects.Consumer) -> float:
    value: float = gauge.labels(consumer.stream, consumer.durable)._value.get()
    return value


async def _pending(guarded: GuardedBus, consumers: tuple[subjects.Consumer, ...], events: int = 1) -> None:
    """As `operator`: each durable consumer as its service makes it, and `events` events on its subject,
    with an event of another subject before each (the consumer's first event is not the stream's)."""
    nc = await nats.connect(guarded.operator_url)
    js = nc.jetstream()
    try:
        for consumer in consumers:
            config = api.ConsumerConfig(
                name=consumer.durable, durable_name=consumer.durable, filter_subject=consumer.filter_subject,
                ack_policy=api.AckPolicy.EXPLICIT, ack_wait=600,
            )  # fmt: skip
            await js.add_consumer(consumer.stream, config=config)
        publisher = bus.EventPublisher(js, source="test")
        for _ in range(events):
            for subject in {c.filter_subject for c in consumers}:
                await js.publish(subjects.DLQ_PREFIX + ".none", b"{}")  # another stream's: no event
                event = TaskTimedOut(task_id="t1", tenant_id="acme", waited_ms=1.0)
                if subject == f"{subjects.PREFIX}.>":  # every event: this one's own subject
                    await publisher.publish(event)
                else:
                    await publisher.publish(event, subject=subject.replace(">", "x").replace("*", "x"))
    finally:
        await nc.close()


async def _consumer_names(guarded: GuardedBus) -> set[str]:
    nc = await nats.connect(guarded.operator_url)
    try:
        return {info.name for info in await nc.jetstream().consumers_info(EVENTS)}
    finally:
        await nc.close()


@pytest.mark.parametrize("service", ["billing", "audit", "router", "executor", "classifier"])
async def test_a_service_reads_the_lag_of_its_own_consumers(guarded: GuardedBus, service: str) -> None:
    mine = lag.consumers_of(service)
    assert mine and {c.stream for c in mine} == {EVENTS}
    await _pending(guarded, mine, events=3)
    errors: list[str] = []
    nc = await guarded.connect(service, errors)
    try:
        js = nc.jetstream()
        for consumer in mine:
            now = datetime.now(UTC) + timedelta(seconds=60)
            await lag.sample(js, consumer, now=now)
            assert _gauge(metrics.CONSUMER_PENDING, consumer) == 3
            pull = await js.pull_subscribe_bind(consumer.durable, stream=consumer.stream)
            first, second = await pull.fetch(2, timeout=5)
            age = (now - first.metadata.timestamp).total_seconds()
            assert 60 <= age < 70
            assert _gauge(metrics.CONSUMER_OLDEST_WAITING_AGE, consumer) == pytest.approx(age, abs=1e-6)
            assert _gauge(metrics.CONSUMER_OLDEST_UNACKED_AGE, consumer) == pytest.approx(age, abs=1e-6)
            # two taken, not acked: the oldest unacked is still the first, the oldest waiting the third
            await lag.sample(js, consumer, now=now)
            assert _gauge(metrics.CONSUMER_PENDING, consumer) == 1
            assert _gauge(metrics.CONSUMER_ACK_PENDING, consumer) == 2
            [third] = await pull.fetch(1, timeout=5)
            waited = (now - third.metadata.timestamp).total_seconds()
            assert _gauge(metrics.CONSUMER_OLDEST_UNACKED_AGE, consumer) == pytest.approx(age, abs=1e-6)
            assert _gauge(metrics.CONSUMER_OLDEST_WAITING_AGE, consumer) == pytest.approx(waited, abs=1e-6)
            assert waited < age
            for msg in (first, second, third):
                await msg.ack_sync()
            await lag.sample(js, consumer, now=now)
            assert _gauge(metrics.CONSUMER_OLDEST_UNACKED_AGE, consumer) == 0
            assert _gauge(metrics.CONSUMER_OLDEST_WAITING_AGE, consumer) == 0
    finally:
        await nc.close()
    assert errors == [] and guarded.violations() == []
    assert not {name for name in await _consumer_names(guarded) if name.startswith("lag-")}


async def test_replicas_sampling_at_once_each_read_the_oldest_event(guarded: GuardedBus) -> None:
    """Three replicas of billing share the name `lag-billing`: when their samples meet, the server refuses
    the later ones' consumers while the first lives and they retry, so none reads another's (which would
    have the message already taken: an age of 0) and none fails."""
    consumer = subjects.BILLING_CONSUMER
    await _pending(guarded, (consumer,))
    replicas = [await guarded.connect("billing") for _ in range(3)]
    try:
        for _ in range(10):
            now = datetime.now(UTC) + timedelta(seconds=60)
            ages = await asyncio.gather(
                *(lag.oldest_age(nc.jetstream(), consumer, after=0, now=now) for nc in replicas)
            )
            assert all(60 <= age < 70 for age in ages), ages
    finally:
        for nc in replicas:
            await nc.close()
    assert guarded.violations() == []
    assert not {name for name in await _consumer_names(guarded) if name.startswith("lag-")}
