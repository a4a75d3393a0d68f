"""Provider calls folded into the shared model statistics in batches, on a real nats-server: calls for
one model that arrive together are one KV write, each caller returns only once its call is stored, a
duplicate event is not counted, and two router replicas writing the same model lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.kv import KeyValue

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, subjects
from switchyard.common.events import ProviderCallRecorded
from switchyard.router.health import ModelStats
from switchyard.router.stats import StatsWriter

pytestmark = pytest.mark.integration


@pytest.fixture
async def bucket(nats_server: NatsServer) -> AsyncIterator[KeyValue]:
    nc = await nats.connect(nats_server.url)
    try:
        yield await kv.bucket(nc.jetstream(), subjects.KV_ROUTING_STATS)
    finally:
        await nc.close()


def call(model: str, outcome: str = "ok", latency_ms: float = 100.0) -> ProviderCallRecorded:
    return ProviderCallRecorded(
        task_id="t",
        tenant_id="acme",
        attempt=1,
        provider="openai",
        model=model,
        outcome=outcome,
        latency_ms=latency_ms,
    )


async def stored(bucket: KeyValue, model: str) -> tuple[ModelStats, int]:
    entry = await bucket.get(kv.safe_key(model))
    assert entry.value is not None and entry.revision is not None
    return ModelStats.model_validate_json(entry.value), entry.revision


async def test_calls_that_arrive_together_are_one_write_and_each_returns_once_stored(
    bucket: KeyValue,
) -> None:
    async def get_bucket() -> KeyValue:
        return bucket

    writer = StatsWriter(get_bucket, linger_s=0.05)
    outcomes = ["ok"] * 8 + ["overloaded"] * 2
    counted = await asyncio.gather(
        *(
            writer.record(f"e{n}", call("openai/o3", outcome), alpha=0.5)
            for n, outcome in enumerate(outcomes)
        ),
        writer.record("e0", call("openai/o3"), alpha=0.5),  # the same event again: not counted twice
        writer.record("x", call("openai/o3", "bad_request"), alpha=0.5),  # says nothing about health
        writer.record("m1", call("anthropic/claude"), alpha=0.5),
    )
    assert counted == [True] * 10 + [False, False, True]
    stats, revision = await stored(bucket, "openai/o3")
    assert stats.samples == 10 and stats.success < 1.0 and stats.latency_ms == 100.0
    other, other_revision = await stored(bucket, "anthropic/claude")
    assert other.samples == 1
    assert {revision, other_revision} == {1, 2}  # one write per model for the whole batch
    # A later call is a new write, folded on what is stored.
    assert await writer.record("e10", call("openai/o3"), alpha=0.5)
    stats, _ = await stored(bucket, "openai/o3")
    assert stats.samples == 11


async def test_a_full_batch_is_written_without_waiting_for_the_linger(bucket: KeyValue) -> None:
    async def get_bucket() -> KeyValue:
        return bucket

    writer = StatsWriter(get_bucket, linger_s=30.0, max_batch=4)
    got = await asyncio.wait_for(
        asyncio.gather(*(writer.record(f"e{n}", call("openai/o3"), alpha=0.5) for n in range(4))), 5
    )
    assert got == [True] * 4
    assert (await stored(bucket, "openai/o3"))[0].samples == 4


async def test_two_replicas_writing_one_model_lose_no_call(nats_server: NatsServer) -> None:
    connections = [await nats.connect(nats_server.url) for _ in range(2)]
    try:
        buckets = [await kv.bucket(nc.jetstream(), subjects.KV_ROUTING_STATS) for nc in connections]

        def writer(b: KeyValue) -> StatsWriter:
            async def get_bucket() -> KeyValue:
                return b

            return StatsWriter(get_bucket, linger_s=0.01)

        replicas = [writer(b) for b in buckets]
        await asyncio.gather(
            *(replicas[n % 2].record(f"e{n}", call("openai/o3"), alpha=0.5) for n in range(40))
        )
        assert (await stored(buckets[0], "openai/o3"))[0].samples == 40
    finally:
        for nc in connections:
            await nc.close()
