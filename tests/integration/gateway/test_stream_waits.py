"""How long the gateway waits on a task's stream (`TaskClient.stream`), on a real nats-server: its first
output is waited for as long as the request waits, even when the executor moved on to another model (a
reset) before it; the idle bound starts with the output."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.common import bus, subjects
from switchyard.common.events import TaskCompleted, Usage
from switchyard.common.streaming import Chunk, encode_chunk
from switchyard.gateway.tasks import TaskClient, TimedOut
from tests.integration.gateway.test_abandoned_tasks import _task, connected

pytestmark = pytest.mark.integration
__all__ = ["connected"]  # the fixture, used by name


async def test_a_fallback_before_the_first_output_keeps_the_wait_for_it(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    """The first model fails at once and the executor switches (a reset chunk); the next one, a reasoning
    model, thinks longer than the stream's idle bound before its first word, within the request's wait.
    Before, the reset started the idle bound: the request failed (504) while the executor still had time."""
    nc, publisher = connected
    task = _task()

    async def executor(_: Msg) -> None:
        chunks = subjects.chunk_subject(task.tenant_id, task.task_id)
        await nc.publish(chunks, encode_chunk(Chunk(seq=0, reset=True, model="openai/o3")))
        await asyncio.sleep(1.5)  # thinking: longer than idle_s, shorter than timeout_s
        await nc.publish(chunks, encode_chunk(Chunk(seq=1, delta="Paris", model="openai/o3")))
        await nc.publish(chunks, encode_chunk(Chunk(seq=2, done=True, finish_reason="stop")))
        done = TaskCompleted(
            task_id=task.task_id,
            tenant_id="acme",
            model="openai/o3",
            provider="openai",
            tier="frontier",
            content="Paris",
            finish_reason="stop",
            usage=Usage(prompt_tokens=3, completion_tokens=1),
            attempts=2,
            latency_ms=1500.0,
            completed_at=datetime.now(UTC),
        )
        await publisher.publish(
            done, subject=subjects.result_subject(task.tenant_id, task.task_id), tenant_id="acme"
        )

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=executor)
    await nc.flush()
    got = [item async for item in TaskClient(nc, publisher).stream(task, timeout_s=3.0, idle_s=0.5)]
    assert [c.delta for c in got if isinstance(c, Chunk) and c.delta] == ["Paris"]
    assert isinstance(got[-1], TaskCompleted)


async def test_once_output_came_a_silence_longer_than_the_idle_bound_ends_the_stream(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    nc, publisher = connected
    task = _task()

    async def executor(_: Msg) -> None:
        chunks = subjects.chunk_subject(task.tenant_id, task.task_id)
        await nc.publish(chunks, encode_chunk(Chunk(seq=0, delta="Par", model="openai/o3")))

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=executor)
    await nc.flush()
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimedOut, match=re.escape("sent nothing for 0.5 s")):
        async for _ in TaskClient(nc, publisher).stream(task, timeout_s=3.0, idle_s=0.5):
            pass
    assert asyncio.get_running_loop().time() - started < 2.0
