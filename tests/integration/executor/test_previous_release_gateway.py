"""A rolling upgrade from 44c1657, executors first: this release's executor (its own process, on a real
nats-server, calling a fake OpenAI) answers a task that a 44c1657 gateway waits for, played as its code
waits (tests/support/previous_release/wire.py: core subscriptions on `switchyard.result.<task_id>` and
`switchyard.chunk.<task_id>`). The gateway hears the answer live, chunks and result, while the events
stream stores the result once, on its new subject only (docs/operations/upgrades.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

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
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.common.streaming import Chunk, decode_chunk
from tests.integration.executor.test_service import QUESTION, Stack, executor_stack, openai
from tests.support.previous_release.wire import PreviousGateway, result_subject

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The executor with its settings' defaults: SWITCHYARD_LEGACY_SUBJECTS is on in this release."""
    with executor_stack(tmp_path_factory.mktemp("executor"), {"SWITCHYARD_LOCAL_ENABLED": "false"}) as up:
        yield up


async def _routed(nc: nats.NATS, upstream: str, *, stream: bool) -> TaskRouted:
    """A task as a 44c1657 gateway submits it (a stream without a start chunk), routed to `upstream`."""
    request = ChatRequest(messages=[ChatMessage(role="user", content=QUESTION)], max_tokens=16, stream=stream)
    task = TaskSubmitted(
        task_id=ids.new_id(), tenant_id="acme", request=request, submitted_at=datetime.now(UTC)
    )
    return TaskRouted(
        task=task,
        classification=Classification(
            type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
        ),
        decision=RoutingDecision(tier="fast", candidates=[openai(upstream)], policy_version="t"),
    )


async def _stored(nc: nats.NATS, task_id: str) -> dict[str, int]:
    """The events stream's result messages of `task_id`, by subject: what billing and audit of either
    release read (their consumers filter on `switchyard.result.>` and `switchyard.>`)."""
    info = await nc.jetstream().stream_info(subjects.STREAM_EVENTS, subjects_filter=subjects.RESULT_ALL)
    return {subject: n for subject, n in (info.state.subjects or {}).items() if subject.endswith(task_id)}


async def test_a_previous_gateway_hears_a_streamed_answer_live(client: nats.NATS) -> None:
    routed = await _routed(client, "gpt-fake", stream=True)
    task = routed.task
    previous = await PreviousGateway.listening(client, task.task_id)
    new_chunks: list[Chunk] = []

    async def on_new_chunk(msg: Msg) -> None:
        new_chunks.append(decode_chunk(msg.data))

    new = await client.subscribe(subjects.chunk_subject(task.tenant_id, task.task_id), cb=on_new_chunk)
    await bus.EventPublisher(client.jetstream(), source="test/router").publish(
        routed, event_id=ids.new_id(), tenant_id="acme", event_subject=task.task_id
    )
    try:
        heard = await asyncio.wait_for(asyncio.shield(previous.result), timeout=30)
        await asyncio.sleep(0.2)  # anything sent twice would be in by now
    finally:
        await previous.close()
        await new.unsubscribe()
    _, done = decode(heard.data, (TaskCompleted, TaskFailed))
    assert isinstance(done, TaskCompleted) and done.model == "openai/gpt-fake", done
    assert [c.seq for c in previous.chunks] == list(range(len(previous.chunks))) and previous.chunks
    assert previous.chunks == new_chunks  # the same chunks, in the same order, once each
    assert previous.chunks[0].model == "openai/gpt-fake"  # no start chunk: the first names the model
    assert "".join(c.delta or "" for c in previous.chunks) == done.content
    assert len(previous.results) == 1
    stored = await client.jetstream().get_last_msg(
        subjects.STREAM_EVENTS, subjects.result_subject(task.tenant_id, task.task_id)
    )
    assert stored.data == heard.data  # the same bytes, under the same event id
    assert (stored.headers or {})["Nats-Msg-Id"] == (heard.headers or {})["Nats-Msg-Id"]
    # stored once, on the new subject: the copy on the old one was dropped as a duplicate
    assert await _stored(client, task.task_id) == {subjects.result_subject(task.tenant_id, task.task_id): 1}


async def test_a_previous_gateway_hears_a_failure_without_a_stream(client: nats.NATS) -> None:
    routed = await _routed(client, "error-401", stream=False)
    task = routed.task
    previous = await PreviousGateway.listening(client, task.task_id)
    await bus.EventPublisher(client.jetstream(), source="test/router").publish(
        routed, event_id=ids.new_id(), tenant_id="acme", event_subject=task.task_id
    )
    try:
        heard = await asyncio.wait_for(asyncio.shield(previous.result), timeout=30)
    finally:
        await previous.close()
    _, failed = decode(heard.data, (TaskCompleted, TaskFailed))
    assert isinstance(failed, TaskFailed) and failed.task_id == task.task_id, failed
    assert heard.subject == result_subject(task.task_id) and not previous.chunks
    assert await _stored(client, task.task_id) == {subjects.result_subject(task.tenant_id, task.task_id): 1}
