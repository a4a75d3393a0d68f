"""The executor as its own process on a real nats-server running embedding tasks on its local embedding
model. The test plays the router: it publishes TaskRouted events for embedding tasks and reads what comes
back: the call records and the result, whose vectors `vectors.fetch` reads (inline in the event, or from
the object store, which this stack keeps small: 16 KiB inline at most, 128 KiB of objects)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import nats
import numpy as np
import pytest
from nats.aio.msg import Msg

from switchyard.common import bus, ids, subjects, vectors
from switchyard.common.envelope import decode
from switchyard.common.events import (
    Classification,
    EmbeddingRequest,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from tests.integration.executor.test_service import Stack, executor_stack

pytestmark = pytest.mark.integration
MINILM = RouteCandidate(
    model="local/all-minilm-l6-v2",
    provider="local",
    upstream_model="all-MiniLM-L6-v2",
    tier="local",
    dimensions=384,
)
# A provider this executor has no key for: skipped without a call, the next candidate answers.
GEMINI = RouteCandidate(
    model="gemini/gemini-embedding-001",
    provider="gemini",
    upstream_model="gemini-embedding-001",
    tier="fast",
    dimensions=384,
)
INLINE = 16 * 1024  # 10 vectors of 384 numbers
STORE = 128 * 1024  # 85 of them


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with executor_stack(
        tmp_path_factory.mktemp("embedding-executor"),
        {
            "SWITCHYARD_RETRY_MAX": "0",
            "SWITCHYARD_EMBEDDING_INLINE_BYTES": str(INLINE),
            "SWITCHYARD_EMBEDDING_STORE_MAX_BYTES": str(STORE),
        },
    ) as running:
        yield running


async def embed(
    nc: nats.NATS, texts: list[str], candidates: list[RouteCandidate]
) -> tuple[TaskCompleted | TaskFailed, list[ProviderCallRecorded], int]:
    """Publishes a routed embedding task; returns its result, its call records and the result event's
    size in bytes."""
    task_id = ids.new_id()
    records: list[ProviderCallRecorded] = []
    result: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_call(msg: Msg) -> None:
        _, call = decode(msg.data)
        if isinstance(call, ProviderCallRecorded) and call.task_id == task_id:
            records.append(call)

    async def on_result(msg: Msg) -> None:
        if not result.done():
            result.set_result(msg)

    subs = [
        await nc.subscribe(subjects.PROVIDER_CALL, cb=on_call),
        await nc.subscribe(subjects.result_subject("acme", task_id), cb=on_result),
    ]
    request = EmbeddingRequest(model=candidates[0].model, input=texts)
    task = TaskSubmitted(task_id=task_id, tenant_id="acme", request=request, submitted_at=datetime.now(UTC))
    routed = TaskRouted(
        task=task,
        classification=Classification(
            type="embedding",
            confidence=1,
            complexity=0,
            urgency=0.5,
            model_version="passthrough",
            latency_ms=0,
        ),
        decision=RoutingDecision(tier="local", candidates=candidates, policy_version="t"),
    )
    await bus.EventPublisher(nc.jetstream(), source="test/router").publish(
        routed, event_id=ids.new_id(), tenant_id="acme", event_subject=task_id
    )
    try:
        await asyncio.wait_for(asyncio.shield(result), timeout=60)
        await asyncio.sleep(0.1)  # call records published before the result are in by now
    finally:
        for sub in subs:
            await sub.unsubscribe()
    _, outcome = decode(result.result().data)
    assert isinstance(outcome, TaskCompleted | TaskFailed)
    return outcome, records, len(result.result().data)


async def test_a_routed_embedding_task_comes_back_with_its_vectors(client: nats.NATS) -> None:
    texts = ["How do I reset my password?", "I forgot my password and cannot log in.", "Best pizza in Naples"]
    done, records, _ = await embed(client, texts, [GEMINI, MINILM])
    assert isinstance(done, TaskCompleted), done
    assert (done.model, done.provider, done.content, done.finish_reason) == (
        MINILM.model,
        "local",
        "",
        "stop",
    )
    assert done.embedding is not None and (done.embedding.count, done.embedding.dimensions) == (3, 384)
    assert done.embedding.data is not None  # 4.6 KB: inline
    rows = np.frombuffer(await vectors.fetch(client.jetstream(), done.embedding), dtype="<f4").reshape(3, 384)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(rows[0] @ rows[1]), float(rows[0] @ rows[2])
    assert similar > 0.5 > unrelated, (similar, unrelated)
    # one call, to the local model (gemini is not configured here: no call), its word pieces as usage
    [record] = records
    assert (record.provider, record.model, record.outcome, record.billable) == (
        "local",
        MINILM.model,
        "ok",
        False,
    )
    assert record.usage.prompt_tokens == done.usage.prompt_tokens > 3 * 2
    assert done.attempts == 1 and done.charged == []


async def test_vectors_over_the_inline_limit_go_to_the_object_store(client: nats.NATS) -> None:
    texts = [f"line {n} of a corpus" for n in range(40)]  # 61,440 bytes of vectors
    done, _, size = await embed(client, texts, [MINILM])
    assert isinstance(done, TaskCompleted) and done.embedding is not None, done
    assert done.embedding.data is None and done.embedding.object == vectors.object_name("acme", done.task_id)
    assert size < 2000, "the event names the object; the numbers are not in it"
    js = client.jetstream()
    rows = np.frombuffer(await vectors.fetch(js, done.embedding), dtype="<f4").reshape(40, 384)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    first, _, _ = await embed(client, texts[:1], [MINILM])  # the same text alone: the same vector, inline
    assert isinstance(first, TaskCompleted) and first.embedding is not None
    assert np.allclose(np.frombuffer(vectors.unpack(first.embedding), dtype="<f4"), rows[0], atol=1e-5)
    await vectors.discard(js, done.embedding)  # as the gateway does once it has read them


async def test_vectors_the_full_store_refuses_fail_the_task_and_the_call_is_billed(client: nats.NATS) -> None:
    count = 100  # 153,600 bytes: more than the whole store holds
    failed, records, _ = await embed(client, ["a"] * count, [MINILM])
    assert isinstance(failed, TaskFailed) and failed.error_code == "embedding_result_unavailable", failed
    assert "could not be kept for delivery" in failed.error_message
    [record] = records
    assert record.outcome == "ok" and record.billable and record.usage.prompt_tokens == 3 * count
    assert [c.model for c in failed.charged] == [MINILM.model]
