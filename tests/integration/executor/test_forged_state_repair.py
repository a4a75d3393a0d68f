"""The executors write their own value back over a forged revision of their shared state at once (real
nats-server under the embedded run's permissions). The router's user, which may only read the breakers,
rate-limit buckets and provider announcements, has the server store revisions there (common/kv_guard.py).
Readers already running keep what they held, but one started since, or one that reads the bucket anew
(the router, every second), reads no value: an open breaker closed, an empty rate bucket full, a
provider gone, until an executor writes that key again. The executors' watches restore it now."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from switchyard.common import kv, providers, subjects
from switchyard.common.providers import BreakerRecord, ProviderStatus, RateRecord
from switchyard.executor.resilience.breaker import BreakerConfig
from switchyard.executor.resilience.limits import Limit
from switchyard.executor.resilience.shared import KVRateLimits, open_breakers
from tests.support.guarded_bus import GuardedBus, forge, restored

pytestmark = pytest.mark.integration


async def clients(guarded: GuardedBus) -> tuple[Client, Client]:
    return await guarded.connect("executor"), await guarded.connect("router")


async def test_an_open_breaker_forged_closed_is_opened_again(guarded: GuardedBus) -> None:
    executor, router = await clients(guarded)
    bucket = await executor.jetstream().key_value(subjects.KV_BREAKERS)
    breakers = await open_breakers(bucket, BreakerConfig(failure_threshold=2, open_s=60.0))
    try:
        for _ in range(2):
            await breakers.record_failure("openai/gpt")
        key = kv.safe_key("openai/gpt")
        seen = await kv.read_all(await router.jetstream().key_value(subjects.KV_BREAKERS))
        assert BreakerRecord.model_validate_json(seen[key]).state == "open"
        closed = BreakerRecord().model_dump_json().encode()
        await forge(router, subjects.KV_BREAKERS, key, closed, own=subjects.KV_ROUTING_STATS)
        value = await restored(bucket, key)
        assert value is not None, "the forged breaker was still the newest revision 5 s later"
        assert BreakerRecord.model_validate_json(value).state == "open"
        # a router reading the bucket anew sees it open again
        seen = await kv.read_all(await router.jetstream().key_value(subjects.KV_BREAKERS))
        assert BreakerRecord.model_validate_json(seen[key]).state == "open"
        assert await breakers.allow("openai/gpt") is False
    finally:
        await breakers.stop()
        await executor.close()
        await router.close()


async def test_an_empty_rate_bucket_forged_full_is_emptied_again(guarded: GuardedBus) -> None:
    executor, router = await clients(guarded)
    bucket = await executor.jetstream().key_value(subjects.KV_RATE_LIMITS)
    limits = KVRateLimits(bucket, {"slow": Limit(rpm=2)})
    await limits.start()
    try:
        assert await limits.try_acquire("slow", tokens=1) is True
        assert await limits.try_acquire("slow", tokens=1) is True
        assert await limits.try_acquire("slow", tokens=1) is False
        key = kv.safe_key("slow")
        await forge(
            router,
            subjects.KV_RATE_LIMITS,
            key,
            RateRecord().model_dump_json().encode(),
            own=subjects.KV_ROUTING_STATS,
        )
        value = await restored(bucket, key)
        assert value is not None, "the forged bucket was still the newest revision 5 s later"
        assert RateRecord.model_validate_json(value).buckets["rpm"].level < 1.0
        other = KVRateLimits(
            await executor.jetstream().key_value(subjects.KV_RATE_LIMITS), {"slow": Limit(rpm=2)}
        )
        assert await other.try_acquire("slow", tokens=1) is False  # a replica started since: still spent
    finally:
        await limits.close()
        await executor.close()
        await router.close()


async def test_a_provider_announcement_forged_away_is_announced_again(guarded: GuardedBus) -> None:
    executor, router = await clients(guarded)
    js = executor.jetstream()
    bucket = await providers.providers_bucket(js)
    keeper = await providers.keep(bucket)
    try:
        await providers.announce(bucket, ProviderStatus(provider="openai", announced_by="executor-1"))
        await asyncio.sleep(0.2)
        gone = ProviderStatus(provider="openai", available=False).model_dump_json().encode()
        await forge(router, subjects.KV_PROVIDERS, "openai", gone, own=subjects.KV_ROUTING_STATS)
        value = await restored(bucket, "openai")
        assert value is not None, "the forged announcement was still the newest revision 5 s later"
        assert ProviderStatus.model_validate_json(value).available
        seen = await providers.read_all(await router.jetstream().key_value(subjects.KV_PROVIDERS))
        assert seen["openai"].available and seen["openai"].announced_by == "executor-1"
    finally:
        await keeper.stop()
        await executor.close()
        await router.close()
