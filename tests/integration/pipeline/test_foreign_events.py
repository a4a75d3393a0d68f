"""Mistakes of another system on the bus, on a real nats-server, each found with `make run` and a nats-py
script: none may stop a service, each is dead-lettered with its reason and its submitter answered.

It publishes an event just under the bus's `max_payload`, on a real nats-server. A service
that carries it on (the classifier wraps the task in its classified event, larger by what it adds) or
dead-letters it (the copy takes the dead letter's headers) would send a message over `max_payload`: nats-py
checks the payload alone, the server counts the headers too and closes the connection, and nats-py never
reconnects after that. One event stopped a service for good (found with `make run`: the classifier). Now
such an event is dead-lettered with its reason, its submitter answered, and the service goes on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import orjson
import pytest
from nats.js import JetStreamContext

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, dlq, invalid, subjects
from switchyard.common.envelope import CloudEvent
from switchyard.common.errors import InvalidEvent
from switchyard.common.events import TaskSubmitted
from tests.support.probe import start_probe
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration

CONSUMER = subjects.Consumer(
    durable="oversized-probe",
    stream=subjects.STREAM_EVENTS,
    filter_subject=subjects.TASK_SUBMITTED,
    max_deliver=2,
)
CARRIED = f"{subjects.PREFIX}.task.classified"


def _event_of(task_id: str, size: int) -> tuple[str, bytes]:
    """A task event as another system writes it (no optional fields), padded to `size` bytes."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"ext-{task_id}",
        "source": "urn:other",
        "type": TaskSubmitted.EVENT_TYPE,
        "data": hello_task(task_id).model_dump(mode="json", exclude_none=True),
    }
    event["data"]["request"]["messages"][0]["content"] = ""
    pad = size - len(orjson.dumps(event))
    event["data"]["request"]["messages"][0]["content"] = "x" * pad
    raw = orjson.dumps(event)
    assert len(raw) == size
    return event["id"], raw


async def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _probe(
    url: str, name: str, handler: Callable[[CloudEvent, TaskSubmitted], Awaitable[None]]
) -> AsyncIterator[tuple[Any, JetStreamContext, bus.EventPublisher]]:
    """A bus service as the platform's are made (`bus.subscribe` on CONSUMER, invalid events dead-lettered
    and their submitters answered), running `handler`; yields its broker, JetStream and publisher."""

    async def on_invalid(raw: bytes, exc: InvalidEvent, _subject: str) -> None:
        await invalid.tell_submitter(publisher, raw, exc.message, code=exc.code)

    broker, publisher = await start_probe(
        url, CONSUMER, "probe", handler, expected=[TaskSubmitted], on_invalid=on_invalid, name=name
    )
    js = bus.jetstream(broker)
    try:
        yield broker, js, publisher
    finally:
        await bus.stop_consumers(broker)
        await broker.stop()


async def test_an_event_near_max_payload_is_dead_lettered_and_answered_and_the_service_goes_on(
    nats_server: NatsServer,
) -> None:
    carried: list[str] = []

    async def handler(event: CloudEvent, payload: TaskSubmitted) -> None:  # as the classifier: wrap it on
        await publisher.publish(payload, subject=CARRIED, event_id=f"{event.id}-on", tenant_id="acme")
        carried.append(payload.task_id)

    async with _probe(nats_server.url, "oversized-test", handler) as (broker, js, publisher):
        await _oversized(nats_server, broker, js, carried)


async def _oversized(nats_server: NatsServer, broker: Any, js: JetStreamContext, carried: list[str]) -> None:
    other = await nats.connect(nats_server.url)
    try:
        theirs = other.jetstream()
        limit = other.max_payload
        answers = await other.subscribe(subjects.result_subject("acme", "t-big"))
        big_id, big = _event_of("t-big", limit - 100)
        await theirs.publish(subjects.TASK_SUBMITTED, big, headers={"Nats-Msg-Id": big_id})
        junk = b"{" + b"x" * (limit - 120)  # not JSON: dead-lettered at once, its copy near the limit too
        await theirs.publish(subjects.TASK_SUBMITTED, junk, headers={"Nats-Msg-Id": "junk"})
        after_id, after = _event_of("t-after", 2_000)
        await theirs.publish(subjects.TASK_SUBMITTED, after, headers={"Nats-Msg-Id": after_id})

        letters: list[dlq.DeadLetter] = []

        async def settled() -> bool:
            letters[:] = [x async for x in dlq.scan(js, service="probe")]
            return len(letters) == 2 and carried == ["t-after"]

        await _wait_for(settled)
        assert broker._connection is not None and broker._connection.is_connected
        codes = sorted(letter.code for letter in letters)
        assert codes == ["event_too_large", "invalid_event"], codes
        too_large = next(letter for letter in letters if letter.code == "event_too_large")
        assert f"over the bus's max_payload of {limit} bytes" in too_large.reason, too_large.reason
        junk_letter = next(letter for letter in letters if letter.code == "invalid_event")
        assert junk_letter.headers[dlq.OMITTED_HEADER] == str(len(junk)) and junk_letter.data == b""
        with pytest.raises(dlq.DeadLetterNotFound, match="holds no copy"):  # nothing to replay
            await dlq.replay(js, junk_letter.seq)
        answer = orjson.loads((await answers.next_msg(timeout=10)).data)
        assert answer["type"] == "switchyard.task.failed.v1"
        assert answer["data"]["error_code"] == "event_too_large"
        assert "max_payload" in answer["data"]["error_message"]
    finally:
        await other.close()


async def test_an_event_without_specversion_is_no_cloudevent_and_is_refused(nats_server: NatsServer) -> None:
    """CloudEvents 1.0 requires `specversion`; an event without it was run as a task (found with `make run`
    from another system's nats-py script). Now it is dead-lettered and answered as any invalid event."""
    handled: list[str] = []

    async def handler(event: CloudEvent, payload: TaskSubmitted) -> None:
        handled.append(payload.task_id)

    async with _probe(nats_server.url, "specversion-test", handler) as (_, js, _):
        await _without_specversion(nats_server, js, handled)


async def _without_specversion(nats_server: NatsServer, js: JetStreamContext, handled: list[str]) -> None:
    other = await nats.connect(nats_server.url)
    try:
        answers = await other.subscribe(subjects.result_subject("acme", "t-nospec"))
        event = orjson.loads(_event_of("t-nospec", 2_000)[1])
        del event["specversion"]
        await other.jetstream().publish(
            subjects.TASK_SUBMITTED, orjson.dumps(event), headers={"Nats-Msg-Id": "nospec"}
        )
        answer = orjson.loads((await answers.next_msg(timeout=10)).data)
        assert answer["data"]["error_code"] == "invalid_event", answer
        assert "specversion" in answer["data"]["error_message"]
        letters = [x async for x in dlq.scan(js, service="probe")]
        assert [letter.code for letter in letters] == ["invalid_event"] and handled == []
    finally:
        await other.close()
