"""Token log probabilities through the executor service on a real nats-server: a streamed task's chunks
on the bus carry each delta's tokens, and its TaskCompleted carries them all, or, past what one result may
carry, the first ones and says so. The executor runs in-process with a scripted provider (the adapters'
own wire tests cover what providers send); the test plays the router."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
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
    TokenLogprob,
)
from switchyard.common.events.logprobs import MAX_LOGPROB_ENTRIES
from switchyard.common.service import start, stop
from switchyard.executor.app import create
from switchyard.executor.config import ExecutorSettings
from switchyard.executor.providers.testing import ScriptedProvider, reply, tokens
from switchyard.executor.registry import ProviderSet
from tests.integration.executor.test_service import openai

pytestmark = pytest.mark.integration
ANSWER = "The capital of France is Paris."


async def run_task(
    nc: Client, model: str, **request: object
) -> tuple[TaskCompleted | TaskFailed, list[bytes]]:
    """Publishes the task as the router does; its result and the raw chunks published for it."""
    task_id = ids.new_id()
    chunks: list[bytes] = []
    result: asyncio.Future[TaskCompleted | TaskFailed] = asyncio.get_running_loop().create_future()

    async def on_chunk(msg: Msg) -> None:
        chunks.append(msg.data)

    async def on_result(msg: Msg) -> None:
        _, payload = decode(msg.data)
        assert isinstance(payload, TaskCompleted | TaskFailed)
        if not result.done():
            result.set_result(payload)

    subs = [
        await nc.subscribe(subjects.chunk_subject("acme", task_id), cb=on_chunk, pending_msgs_limit=-1),
        await nc.subscribe(subjects.result_subject("acme", task_id), cb=on_result),
    ]
    chat = ChatRequest(messages=[ChatMessage(role="user", content="Capital of France?")], **request)
    task = TaskSubmitted(task_id=task_id, tenant_id="acme", request=chat, submitted_at=datetime.now(UTC))
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
    outcome = await asyncio.wait_for(result, 60)
    for _ in range(50):  # the chunks were published before the result, on another subject
        if chunks and orjson.loads(chunks[-1]).get("done"):
            break
        await asyncio.sleep(0.1)
    for sub in subs:
        await sub.unsubscribe()
    return outcome, chunks


@contextlib.asynccontextmanager
async def executor(server: NatsServer, scripted: ScriptedProvider) -> AsyncIterator[Client]:
    """The executor service with `scripted` as its `openai` provider, and a client connection."""
    settings = ExecutorSettings(nats_url=server.url, local_enabled=False, shared_state=False)
    found = ProviderSet()
    found.add("openai", scripted, "test")
    service = create(settings, providers=found)
    nc = await nats.connect(server.url)
    try:
        await bus.ensure_streams(nc.jetstream())
        await start(service, settings)
        yield nc
    finally:
        await stop(service, grace_s=1)
        await nc.close()


async def test_a_streamed_tasks_chunks_carry_its_tokens_and_its_result_carries_them_all(
    nats_server: NatsServer,
) -> None:
    answer = tokens(ANSWER, top=2)
    scripted = ScriptedProvider(reply(ANSWER, logprobs=answer))
    async with executor(nats_server, scripted) as nc:
        outcome, raw = await run_task(nc, "gpt-fake", stream=True, logprobs=True, top_logprobs=2)
        # The same task not asking: no tokens anywhere, though the provider sends them.
        plain, plain_raw = await run_task(nc, "gpt-fake", stream=True)
    assert isinstance(outcome, TaskCompleted), outcome
    assert outcome.content == ANSWER and outcome.logprobs == list(answer)
    assert not outcome.logprobs_truncated
    assert [(c.logprobs, c.top_logprobs) for c in scripted.calls] == [(True, 2), (False, None)]
    chunks = [orjson.loads(c) for c in raw]
    texts = [c for c in chunks if "delta" in c]
    # one token a chunk, each compact: no `bytes` where they are the token's UTF-8
    assert [c["logprobs"] for c in texts] == [[t.model_dump(exclude_none=True)] for t in answer]
    assert "".join(c["delta"] for c in texts) == ANSWER and b'"bytes"' not in b"".join(raw)
    assert chunks[-1] == {"seq": len(chunks) - 1, "done": True, "finish_reason": "stop"}

    assert isinstance(plain, TaskCompleted) and plain.content == ANSWER and plain.logprobs is None
    assert plain_raw and not any("logprobs" in orjson.loads(c) for c in plain_raw)


async def test_past_what_a_result_may_carry_the_result_has_the_first_tokens_and_says_so(
    nats_server: NatsServer,
) -> None:
    """10,000 tokens with 20 alternatives each (210,000 entries, some 10 MB as an event: more than the
    bus takes in one message): the stream sends every token in its chunk; the result carries the first
    3,120 tokens (65,520 entries) and says it was cut, and gets through."""
    text = " ".join(f"w{i}" for i in range(10_000))
    answer = tokens(text, top=20)
    async with executor(nats_server, ScriptedProvider(reply(text, logprobs=answer))) as nc:
        outcome, raw = await run_task(nc, "gpt-fake", stream=True, logprobs=True, top_logprobs=20)
    assert isinstance(outcome, TaskCompleted), outcome
    assert outcome.content == text and outcome.logprobs_truncated
    assert outcome.logprobs is not None and len(outcome.logprobs) == MAX_LOGPROB_ENTRIES // 21 == 3120
    assert outcome.logprobs == list(answer[:3120])
    streamed = [TokenLogprob.model_validate(t) for c in raw for t in orjson.loads(c).get("logprobs", ())]
    assert len(streamed) == 10_000 and streamed[-1] == answer[-1]
