"""A provider-call record the stream refuses for longer than a publish retries, while it stores the task's
result, is still stored once the stream takes it again (the executor owes it), not lost to the
redelivery that finds the result and runs nothing. The executor runs as its own process on a real
nats-server; the refusal is real: the events stream stops taking `switchyard.provider.>` for a while."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import nats
import pytest

from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RoutingDecision,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
)
from tests.integration.executor.test_service import Stack, executor_stack, openai

pytestmark = pytest.mark.integration
CALLS = f"{subjects.PREFIX}.provider.>"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A nats-server of its own: the test changes the events stream's subjects.
    settings = {"SWITCHYARD_METRICS_BASE_PORT": "0"}
    with executor_stack(tmp_path_factory.mktemp("executor-owed"), settings) as running:
        yield running


async def _set_call_records_stored(js: nats.js.JetStreamContext, stored: bool) -> None:
    if stored:
        await bus.ensure_streams(js)
        return
    config = (await js.stream_info(subjects.STREAM_EVENTS)).config
    config.subjects = [s for s in config.subjects or [] if s != CALLS]
    await js.update_stream(config)


async def _stored_calls(js: nats.js.JetStreamContext, task_id: str) -> list[ProviderCallRecorded]:
    sub = await js.subscribe(subjects.PROVIDER_CALL, ordered_consumer=True)
    found = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                return found
            _, call = decode(msg.data, (ProviderCallRecorded,))
            if call.task_id == task_id:  # type: ignore[attr-defined]
                found.append(call)  # type: ignore[arg-type]
    finally:
        await sub.unsubscribe()


async def _until(what: str, check: object, *, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_a_call_record_refused_while_the_result_is_stored_is_not_lost(stack: Stack) -> None:
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    task_id = ids.new_id()
    request = ChatRequest(messages=[ChatMessage(role="user", content="Hi")], max_tokens=8)
    routed = TaskRouted(
        task=TaskSubmitted(
            task_id=task_id, tenant_id="acme", request=request, submitted_at=datetime.now(UTC)
        ),
        classification=Classification(
            type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
        ),
        decision=RoutingDecision(tier="fast", candidates=[openai("gpt-fake")], policy_version="t"),
    )
    try:
        await _set_call_records_stored(js, False)
        await bus.EventPublisher(js, source="test/router").publish(
            routed, event_id=ids.new_id(), tenant_id="acme", event_subject=task_id
        )

        async def result_stored() -> bool:
            try:
                msg = await js.get_last_msg(subjects.STREAM_EVENTS, subjects.result_subject("acme", task_id))
            except nats.js.errors.NotFoundError:
                return False
            return isinstance(decode(msg.data)[1], TaskCompleted)

        async def routed_event_settled() -> bool:
            info = await js.consumer_info(subjects.STREAM_EVENTS, subjects.EXECUTOR_CONSUMER.durable)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await _until("the result was not stored", result_stored, within_s=30)
        # The record's publish gives up after its retries (~6 s); the routed event is then acked, at once
        # or after a redelivery that finds the result. Only then does the stream take records again.
        await _until("the routed event was never settled", routed_event_settled, within_s=30)
    finally:
        await _set_call_records_stored(js, True)

    async def record_stored() -> bool:
        return len(await _stored_calls(js, task_id)) == 1

    try:
        await _until("the refused provider-call record was lost", record_stored, within_s=25)
        (call,) = await _stored_calls(js, task_id)
        assert (call.attempt, call.model, call.outcome) == (1, "openai/gpt-fake", "ok")
        assert (
            call.usage.total_tokens > 0 and not call.billable
        )  # the delivered answer: charged by the result
    finally:
        await nc.close()
