"""Each service's NATS user under the embedded run's permissions (`cli/bus_permissions.py`) can still read
its own consumers' lag: with events pending, the age of the oldest is a message get on the stream (real
nats-server). `switchyard up` found the billing user refused this under load (a permissions violation
every 10 s, the lag gauges never set)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from pydantic import SecretStr

from switchyard.cli import bus_permissions, bus_stores, nats_users
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, lag, metrics, subjects
from switchyard.common.bus_auth import NatsCredentials
from switchyard.common.events import TaskTimedOut

pytestmark = pytest.mark.integration


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[NatsServer, dict[str, str]]]:
    passwords = nats_users.ensure_passwords(tmp_path)
    server = NatsServer(
        tmp_path / "jetstream", users=passwords, permissions=bus_permissions.permissions
    ).start()
    try:
        yield server, passwords
    finally:
        server.stop()


@pytest.mark.parametrize("service", ["billing", "audit", "router", "executor", "classifier"])
async def test_a_service_reads_the_lag_of_its_own_consumers(
    guarded: tuple[NatsServer, dict[str, str]], service: str
) -> None:
    server, passwords = guarded
    operator = await nats.connect(server.url_as(nats_users.OPERATOR))
    js = operator.jetstream()
    await bus_stores.provision(js)
    mine = lag.consumers_of(service)
    assert mine
    for consumer in mine:  # as the service makes it (`PullConsumer`): a durable one on its subject
        config = ConsumerConfig(
            name=consumer.durable, durable_name=consumer.durable, filter_subject=consumer.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
        )  # fmt: skip
        await js.add_consumer(consumer.stream, config=config)
    publisher = bus.EventPublisher(js, source="test")
    for subject in {c.filter_subject for c in mine}:  # one pending event for each of its consumers
        event = TaskTimedOut(task_id="t1", tenant_id="acme", waited_ms=1.0)
        if subject == f"{subjects.PREFIX}.>":  # every event: this one's own subject
            await publisher.publish(event)
        else:
            await publisher.publish(event, subject=subject.replace(">", "x").replace("*", "x"))
    await operator.close()

    who = NatsCredentials(user=service, password=SecretStr(passwords[service]))
    errors: list[Exception] = []

    async def noted(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(server.url, error_cb=noted, **who.connect_options())
    try:
        for consumer in mine:
            await lag.sample(nc.jetstream(), consumer)
            labels = (consumer.stream, consumer.durable)
            assert metrics.CONSUMER_PENDING.labels(*labels)._value.get() >= 1
            assert metrics.CONSUMER_OLDEST_WAITING_AGE.labels(*labels)._value.get() > 0
    finally:
        await nc.close()
    assert not errors, errors
    assert subjects.STREAM_EVENTS in {c.stream for c in mine}
