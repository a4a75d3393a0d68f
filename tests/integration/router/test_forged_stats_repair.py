"""The router writes a model's statistics back over a forged revision at once (real nats-server under the
embedded run's permissions). The executor's user, which may not write the routing statistics, has the
server store a revision there (common/kv_guard.py). Before, every router read no statistics for the model
(each reads the bucket anew every second) until its next call was folded, and that fold started from the
forger's value, stored from then on as the router's own."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.kv import KeyValue

from switchyard.common import kv, kv_guard, subjects
from switchyard.common.events import ProviderCallRecorded
from switchyard.router.health import ModelStats
from switchyard.router.stats import StatsWriter
from tests.support.guarded_bus import GuardedBus, forge

pytestmark = pytest.mark.integration


def call(outcome: str) -> ProviderCallRecorded:
    return ProviderCallRecorded(
        task_id="t",
        tenant_id="acme",
        attempt=1,
        provider="openai",
        model="openai/o3",
        outcome=outcome,
        latency_ms=100.0,
    )


async def restored(bucket: KeyValue, key: str, *, within_s: float = 5.0) -> bytes | None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            return (await kv_guard.read(bucket, key))[0]
        except kv_guard.ForgedEntry:
            await asyncio.sleep(0.1)
    return None


async def test_forged_statistics_are_written_over_and_never_folded(guarded: GuardedBus) -> None:
    router, executor = await guarded.connect("router"), await guarded.connect("executor")
    bucket = await router.jetstream().key_value(subjects.KV_ROUTING_STATS)

    async def get_bucket() -> KeyValue:
        return bucket

    writer = StatsWriter(get_bucket, linger_s=0.01)
    await writer.start()
    try:
        for n in range(4):
            assert await writer.record(f"e{n}", call("overloaded"), alpha=0.5)
        key = kv.safe_key("openai/o3")
        real = ModelStats.model_validate_json((await kv_guard.read(bucket, key))[0] or b"")
        assert real.samples == 4 and real.success < 0.1
        healthy = ModelStats(success=1.0, latency_ms=1.0, samples=1000).model_dump_json().encode()
        await forge(executor, subjects.KV_ROUTING_STATS, key, healthy)
        value = await restored(bucket, key)
        assert value is not None, "the forged statistics were still the newest revision 5 s later"
        assert ModelStats.model_validate_json(value).samples == 4
        assert await writer.record("e9", call("overloaded"), alpha=0.5)
        folded = ModelStats.model_validate_json((await kv_guard.read(bucket, key))[0] or b"")
        assert folded.samples == 5
    finally:
        await writer.stop()
        await router.close()
        await executor.close()
