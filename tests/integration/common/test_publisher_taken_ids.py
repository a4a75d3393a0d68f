"""An event id another bus user published under first is not the end of the event. The services derive
ids from their causes, and another system knows its own tasks' event ids: scoped to acme, it publishes on
its own subject under the id its task's result (or usage) will have, and the events stream would drop the
real event as a duplicate, so billing and the ledger would never see it. Where an event is charged (the
executor's, the gateway's cached answers) the publisher checks a duplicate ack against the message it
names and publishes the event again under a new id; a real duplicate (a redelivery's re-publish) is still
stored once. On a real nats-server with `switchyard up`'s permissions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from switchyard.cli.bus_permissions import Integrator
from switchyard.common import bus, ids, subjects
from switchyard.common.events import TaskCompleted
from switchyard.common.events.base import EventPayload
from tests.support.guarded_bus import GuardedBus, scoped_guarded_bus
from tests.support.tasks import completed

pytestmark = pytest.mark.integration

SCOPED = Integrator("integrator", ("acme",))


@pytest.fixture
def scoped_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    yield from scoped_guarded_bus(tmp_path, monkeypatch, SCOPED)


def _result() -> TaskCompleted:
    return completed("job-1")


@pytest.mark.parametrize(
    ("user", "payload", "subject"),
    [
        ("executor", _result(), subjects.result_subject("acme", "job-1")),
        ("gateway", _result(), subjects.result_subject("acme", "job-1")),  # a cached answer
    ],
)
async def test_an_event_whose_id_was_taken_is_stored_under_a_new_one(
    scoped_bus: GuardedBus, user: str, payload: EventPayload, subject: str
) -> None:
    integrator = await scoped_bus.connect(SCOPED.user)
    service = await scoped_bus.connect(user)
    try:
        derived = ids.derived_id("the-integrators-own-event-id", "result")  # what it can work out
        squat = f"{subjects.TASK_FEEDBACK}.{subjects.tenant_token('acme')}"
        await integrator.jetstream().publish(squat, b"{}", headers={"Nats-Msg-Id": derived})

        publisher = bus.EventPublisher(
            service.jetstream(), source=f"switchyard/{user}", checks_duplicates=True
        )
        stored_id = await publisher.publish(payload, subject=subject, event_id=derived, tenant_id="acme")

        assert stored_id != derived
        stored = await service.jetstream().get_last_msg(subjects.STREAM_EVENTS, subject)
        assert orjson.loads(stored.data or b"{}")["id"] == stored_id  # the event's own id is the new one
        assert (stored.headers or {}).get("Nats-Msg-Id") == stored_id
        # a redelivery's re-publish of the event (its new id, its subject) is a plain duplicate
        again = await publisher.publish(payload, subject=subject, event_id=stored_id, tenant_id="acme")
        assert again == stored_id
        info = await service.jetstream().stream_info(subjects.STREAM_EVENTS)
        assert info.state.messages == 2  # the integrator's message and the event, once
    finally:
        await integrator.close()
        await service.close()
    scoped_bus.assert_clean()


async def test_an_event_sent_whose_id_was_taken_is_stored_under_a_new_one(scoped_bus: GuardedBus) -> None:
    """`send` (the executor's results, confirmed together) checks its ack as `publish` does."""
    integrator = await scoped_bus.connect(SCOPED.user)
    executor = await scoped_bus.connect("executor")
    try:
        derived = ids.derived_id("the-integrators-own-event-id", "result")
        squat = f"{subjects.TASK_FEEDBACK}.{subjects.tenant_token('acme')}"
        await integrator.jetstream().publish(squat, b"{}", headers={"Nats-Msg-Id": derived})

        publisher = bus.EventPublisher(
            executor.jetstream(), source="switchyard/executor", checks_duplicates=True
        )
        subject = subjects.result_subject("acme", "job-1")
        confirm = await publisher.send(_result(), subject=subject, event_id=derived, tenant_id="acme")
        stored_id = await confirm()

        assert stored_id != derived
        stored = await executor.jetstream().get_last_msg(subjects.STREAM_EVENTS, subject)
        assert orjson.loads(stored.data or b"{}")["id"] == stored_id
        assert (stored.headers or {}).get("Nats-Msg-Id") == stored_id
        info = await executor.jetstream().stream_info(subjects.STREAM_EVENTS)
        assert info.state.messages == 2  # the integrator's message and the event
    finally:
        await integrator.close()
        await executor.close()
    scoped_bus.assert_clean()


async def test_a_redelivered_event_sent_again_is_stored_once_under_its_id(scoped_bus: GuardedBus) -> None:
    executor = await scoped_bus.connect("executor")
    try:
        publisher = bus.EventPublisher(
            executor.jetstream(), source="switchyard/executor", checks_duplicates=True
        )
        subject = subjects.result_subject("acme", "job-1")
        first = await publisher.publish(_result(), subject=subject, event_id="e-1", tenant_id="acme")
        confirm = await publisher.send(_result(), subject=subject, event_id="e-1", tenant_id="acme")
        assert (first, await confirm()) == ("e-1", "e-1")
        info = await executor.jetstream().stream_info(subjects.STREAM_EVENTS)
        assert info.state.messages == 1
    finally:
        await executor.close()
    scoped_bus.assert_clean()
