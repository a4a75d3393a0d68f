"""`switchyard_gateway_tasks_total{outcome}` (the SLA dashboard's *Tasks by outcome*), on a real nats-server:
each task the gateway submits is counted once, by how its wait ended: its outcome (completed, failed),
the wait running out (timed_out), or its client leaving (cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from switchyard.common import bus, envelope, subjects
from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted, Usage
from switchyard.gateway.tasks import TaskClient, TimedOut
from tests.integration.gateway.test_abandoned_tasks import _task, connected
from tests.support.tasks import completed

pytestmark = pytest.mark.integration
__all__ = ["connected"]  # the fixture, used by name

OUTCOMES = ("completed", "failed", "timed_out", "cancelled")


def _counts() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value("switchyard_gateway_tasks_total", {"outcome": outcome}) or 0.0
        for outcome in OUTCOMES
    }


def counted_since(before: dict[str, float]) -> dict[str, float]:
    """What was counted of each outcome since `before` (`_counts()`)."""
    now = _counts()
    return {outcome: now[outcome] - before[outcome] for outcome in OUTCOMES}


def _answer(task: TaskSubmitted, content: str) -> TaskCompleted | TaskFailed:
    if content == "fail":
        return TaskFailed(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            error_code="provider_error",
            error_message="every model failed",
            failed_at=datetime.now(UTC),
        )
    usage = Usage(prompt_tokens=3, completion_tokens=1)
    return completed(task.task_id, task.tenant_id, content=content, usage=usage, latency_ms=5.0)


async def test_each_task_is_counted_once_by_how_its_wait_ended(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    nc, publisher = connected
    replies: dict[str, str] = {}  # task id -> what the stand-in executor does: answer, fail, or nothing

    async def executor(msg: Msg) -> None:
        _, task = envelope.decode(msg.data, (TaskSubmitted,))
        what = replies[task.task_id]
        if what != "nothing":
            result = _answer(task, what)
            await publisher.publish(
                result, subject=subjects.result_subject(task.tenant_id, task.task_id), tenant_id="acme"
            )

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=executor)
    await nc.flush()
    client = TaskClient(nc, publisher)

    def task_that(what: str) -> TaskSubmitted:
        task = _task()
        replies[task.task_id] = what
        return task

    before = _counts()
    await client.run(task_that("Paris"), timeout_s=3.0)
    await client.run(task_that("fail"), timeout_s=3.0)
    with pytest.raises(TimedOut):
        await client.run(task_that("nothing"), timeout_s=0.2)
    streamed = [item async for item in client.stream(task_that("Paris"), timeout_s=3.0)]
    assert isinstance(streamed[-1], TaskCompleted)
    waiting = await client.start(task_that("Paris"))  # the task API
    await asyncio.wait_for(waiting, 3.0)
    gone = task_that("nothing")
    stream = client.stream(gone, timeout_s=3.0)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)  # submitted, nothing came: its client leaves
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await stream.aclose()
    client.abandon(gone)
    await client.drain()

    assert counted_since(before) == {"completed": 3, "failed": 1, "timed_out": 1, "cancelled": 1}
