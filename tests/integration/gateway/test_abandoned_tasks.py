"""A task whose client went away (`TaskClient.abandon`) on a real nats-server with JetStream: it is cancelled
on the bus, and its outcome, which lists what the cut calls were still charged, settles its admission
whether it comes after the cancellation, came before it, or never comes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChargedCall,
    ChatRequest,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    Usage,
)
from switchyard.gateway import tasks
from switchyard.gateway.tasks import TaskClient

pytestmark = pytest.mark.integration


@pytest.fixture
async def connected(nats_server: NatsServer) -> AsyncIterator[tuple[Client, bus.EventPublisher]]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    yield nc, bus.EventPublisher(js, source="test/executor")
    await nc.close()


def _task() -> TaskSubmitted:
    return TaskSubmitted(
        task_id=ids.new_id(),
        tenant_id="acme",
        user_id="u1",
        request=ChatRequest(messages=[{"role": "user", "content": "write a long story"}]),
        submitted_at=datetime.now(UTC),
    )


def _cut(task: TaskSubmitted) -> TaskFailed:
    return TaskFailed(
        task_id=task.task_id,
        tenant_id=task.tenant_id,
        error_code="task_cancelled",
        error_message="cancelled",
        failed_at=datetime.now(UTC),
        charged=[
            ChargedCall(model="openai/gpt-4o-mini", usage=Usage(prompt_tokens=9, completion_tokens=120))
        ],
    )


async def _abandoned(client: TaskClient, task: TaskSubmitted) -> list[TaskCompleted | TaskFailed | None]:
    settled: list[TaskCompleted | TaskFailed | None] = []

    async def settle(outcome: TaskCompleted | TaskFailed | None) -> None:
        settled.append(outcome)

    client.abandon(task, then=settle)
    await client.drain()
    return settled


async def test_the_outcome_the_cancellation_causes_settles_the_task(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    nc, publisher = connected
    task = _task()

    async def executor(msg: Msg) -> None:  # cuts the call and publishes what it was charged
        _, cancelled = decode(msg.data, (TaskCancelled,))
        assert isinstance(cancelled, TaskCancelled) and cancelled.reason == "disconnected"
        await publisher.publish(
            _cut(task), subject=subjects.result_subject(task.tenant_id, task.task_id), tenant_id="acme"
        )

    await nc.subscribe(subjects.TASK_CANCELLED, cb=executor)
    await nc.flush()
    settled = await _abandoned(TaskClient(nc, publisher), task)
    assert settled == [_cut(task).model_copy(update={"failed_at": settled[0].failed_at})]  # type: ignore[union-attr]


async def test_an_outcome_published_before_the_cancellation_is_read_from_the_stream(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    """The executor finished as the client left: nothing answers the cancellation, the stored result does."""
    nc, publisher = connected
    task = _task()
    await publisher.publish(
        _cut(task), subject=subjects.result_subject(task.tenant_id, task.task_id), tenant_id="acme"
    )
    settled = await _abandoned(TaskClient(nc, publisher), task)
    assert len(settled) == 1 and isinstance(settled[0], TaskFailed)
    assert settled[0].charged[0].usage.completion_tokens == 120


async def test_no_outcome_in_time_settles_as_nothing_charged(
    connected: tuple[Client, bus.EventPublisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task not started yet (it is skipped when it reaches an executor) or an executor away: released."""
    monkeypatch.setattr(tasks, "SETTLE_WAIT_S", 0.3)
    nc, publisher = connected
    assert await _abandoned(TaskClient(nc, publisher), _task()) == [None]


async def test_a_timed_out_task_is_followed_without_a_cancellation(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    """After a 504 the executor stops the task on hearing the timeout (already published): `follow`
    publishes nothing, and settles at the outcome that the timeout causes."""
    nc, publisher = connected
    task, cancellations = _task(), []

    async def on_cancelled(msg: Msg) -> None:
        cancellations.append(msg)

    await nc.subscribe(subjects.TASK_CANCELLED, cb=on_cancelled)
    client, settled = TaskClient(nc, publisher), []

    async def settle(outcome: TaskCompleted | TaskFailed | None) -> None:
        settled.append(outcome)

    client.follow(task, then=settle)
    await asyncio.sleep(0.2)  # listening by now
    await publisher.publish(
        _cut(task), subject=subjects.result_subject(task.tenant_id, task.task_id), tenant_id="acme"
    )
    await client.drain()
    await nc.flush()
    assert [type(o) for o in settled] == [TaskFailed] and cancellations == []
