"""Results copied to the subjects of the release before tenant tokens (44c1657), on a real nats-server:
whoever publishes a result through `EventPublisher` (the executor, the router and classifier answering a
task's failure, the tenant check, the stranded sweep, the gateway's cache hits), a 44c1657 gateway hears it
live on `switchyard.result.<task_id>`, and the events stream keeps it once, so billing and audit of either
release (durables on `switchyard.result.>`, `switchyard.>`) read it once (docs/operations/upgrades.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import nats
import pytest
from nats.js import api

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects
from switchyard.common.events import TaskFailed
from tests.support.previous_release.wire import PreviousGateway

pytestmark = pytest.mark.integration


def _failed(task_id: str) -> TaskFailed:
    return TaskFailed(
        task_id=task_id,
        tenant_id="acme",
        error_code="no_provider_available",
        error_message="no model can take it",
        failed_at=datetime.now(UTC),
    )


async def _durable_reads(js: nats.js.JetStreamContext, durable: str, filter_subject: str) -> list[str]:
    """The subjects a durable pull consumer made now on `filter_subject` (as billing's and audit's of
    either release are) gets of the stream's first messages."""
    await js.add_consumer(
        subjects.STREAM_EVENTS,
        api.ConsumerConfig(
            durable_name=durable,
            filter_subject=filter_subject,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
        ),
    )
    sub = await js.pull_subscribe_bind(durable, subjects.STREAM_EVENTS)
    try:
        msgs = await sub.fetch(10, timeout=1.0)
    except nats.errors.TimeoutError:
        return []
    return [m.subject for m in msgs]


async def test_a_published_result_is_heard_on_the_old_subject_and_stored_once(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    publisher = bus.EventPublisher(js, source="switchyard/router", legacy_subjects=True)
    task_id = ids.new_id()
    previous = await PreviousGateway.listening(nc, task_id)
    new_subject = subjects.result_subject("acme", task_id)
    try:
        eid = await publisher.publish(_failed(task_id), subject=new_subject, tenant_id="acme")
        heard = await asyncio.wait_for(asyncio.shield(previous.result), timeout=5)
        # a redelivery publishes it again (same id): stored once still, and heard again
        await publisher.publish(_failed(task_id), subject=new_subject, event_id=eid, tenant_id="acme")
        confirm = await publisher.send(_failed(task_id), subject=new_subject, event_id=eid, tenant_id="acme")
        await confirm()
        await nc.flush()
        await asyncio.sleep(0.2)
        assert len(previous.results) == 3
        stored = await js.get_last_msg(subjects.STREAM_EVENTS, new_subject)
        assert heard.data == stored.data and (heard.headers or {})["Nats-Msg-Id"] == eid
        info = await js.stream_info(subjects.STREAM_EVENTS)
        assert info.state.messages == 1
        for durable, on in (("billing", subjects.RESULT_ALL), ("audit", f"{subjects.PREFIX}.>")):
            assert await _durable_reads(js, durable, on) == [new_subject]
    finally:
        await previous.close()
        await nc.close()


async def test_without_the_setting_nothing_goes_on_the_old_subjects(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    task_id = ids.new_id()
    previous = await PreviousGateway.listening(nc, task_id)
    try:
        await bus.EventPublisher(js, source="switchyard/router").publish(
            _failed(task_id), subject=subjects.result_subject("acme", task_id), tenant_id="acme"
        )
        await nc.flush()
        await asyncio.sleep(0.3)
        assert previous.results == []
    finally:
        await previous.close()
        await nc.close()
