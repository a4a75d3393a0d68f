"""Cancellations an executor was not there to hear: published before it started, or while its server
restarted. A real nats-server, the executor as its own process, a fake OpenAI upstream; the test plays
the router (TaskRouted) and the gateway (TaskCancelled, TaskTimedOut)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    RoutingDecision,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from tests.integration.executor.conftest import Upstream
from tests.integration.executor.test_service import _wait_until_answering, cancel, openai
from tests.support.procs import service_process

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[nats.NATS]:
    nc = await nats.connect(upstream.nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    await bus.ensure_streams(nc.jetstream())
    yield nc
    await nc.close()


@contextlib.asynccontextmanager
async def executor(upstream: Upstream) -> AsyncIterator[None]:
    """The executor as its own process, started when the test says so, answering pings."""
    log = upstream.tmp / "executor.log"
    with service_process("switchyard.executor", env=upstream.env, log_path=log) as proc:
        await _wait_until_answering(upstream.nats.url, proc, log)
        yield


async def route(
    nc: nats.NATS,
    task_id: str,
    model: str,
    *,
    stream: bool = False,
    stream_start: bool | None = None,
    **fields: Any,
) -> asyncio.Future[TaskCompleted | TaskFailed]:
    """Publishes the task (with these TaskSubmitted `fields`) as the router does; the future is its result
    once the executor sends it."""
    result: asyncio.Future[TaskCompleted | TaskFailed] = asyncio.get_running_loop().create_future()

    async def on_result(msg: Msg) -> None:
        _, payload = decode(msg.data)
        assert isinstance(payload, TaskCompleted | TaskFailed)
        if not result.done():
            result.set_result(payload)

    await nc.subscribe(
        subjects.result_subject("acme", task_id), cb=on_result
    )  # until the test's connection closes
    request = ChatRequest(
        messages=[ChatMessage(role="user", content="Hello?")],
        max_tokens=16,
        stream=stream,
        stream_start=stream_start,
    )
    task = TaskSubmitted(
        task_id=task_id, tenant_id="acme", request=request, submitted_at=datetime.now(UTC), **fields
    )
    routed = TaskRouted(
        task=task,
        classification=Classification(
            type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
        ),
        decision=RoutingDecision(tier="fast", candidates=[openai(model)], policy_version="t"),
    )
    await bus.EventPublisher(nc.jetstream(), source="test/router").publish(
        routed, tenant_id="acme", event_subject=task_id
    )
    return result


@pytest.mark.parametrize("how", ["cancelled", "timed_out"])
async def test_a_task_cancelled_before_any_executor_started_is_not_run(
    client: nats.NATS, upstream: Upstream, how: str
) -> None:
    """The task waits on the stream and its cancellation was published while no executor ran (or one
    was restarting): the executor that starts skips it, rather than run it and pay for an unwanted answer.
    A second task, cancelled too, arrives after the start."""
    queued, later = ids.new_id(), ids.new_id()
    model = f"never-called-{how}"
    waiting = await route(client, queued, model)
    await cancel(client, queued, how=how)
    await cancel(client, later, how=how)
    async with executor(upstream):
        arriving = await route(client, later, model)
        for result in (waiting, arriving):
            failed = await asyncio.wait_for(result, 30)
            assert isinstance(failed, TaskFailed), failed
            assert (failed.error_code, failed.attempts) == ("task_cancelled", 0)
    assert upstream.fake.scenarios.calls[model] == 0


async def test_a_cancellation_older_than_the_window_is_not_replayed(
    client: nats.NATS, upstream: Upstream
) -> None:
    """A cancellation made longer ago than the executor remembers (10 minutes) counts for nothing, even
    though the stream holds it: its task runs as usual."""
    task_id = ids.new_id()
    long_ago = TaskCancelled(
        task_id=task_id, tenant_id="acme", cancelled_at=datetime.now(UTC) - timedelta(minutes=11)
    )
    await bus.EventPublisher(client.jetstream(), source="test/gateway").publish(
        long_ago, tenant_id="acme", event_subject=task_id
    )
    async with executor(upstream):
        done = await asyncio.wait_for(await route(client, task_id, "gpt-fake"), 30)
    assert isinstance(done, TaskCompleted), done


async def test_a_cancellation_published_while_the_executor_was_disconnected_is_heard(
    upstream: Upstream,
) -> None:
    """The server restarts under a running executor (its consumer of the cancellations, in memory, goes
    with it), and as soon as it is back (most likely before the executor, which retries every second, has
    reconnected) a task of ten seconds is published and cancelled: the executor, reconnected, takes the
    task and hears the cancellation, so the task ends cancelled, not answered ten seconds later."""
    task_id = ids.new_id()
    async with executor(upstream):
        upstream.nats.stop()
        upstream.nats.start()
        nc = await nats.connect(upstream.nats.url)
        try:
            begun = time.monotonic()
            result = await route(nc, task_id, "slow-10")
            await cancel(nc, task_id)
            failed = await asyncio.wait_for(result, 30)
        finally:
            await nc.close()
    assert isinstance(failed, TaskFailed) and failed.error_code == "task_cancelled", failed
    assert time.monotonic() - begun < 10
