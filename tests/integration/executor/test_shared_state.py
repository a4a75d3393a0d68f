"""Breakers and rate limits shared by executor replicas through JetStream KV (compare-and-set): several
instances on one bucket behave as one breaker and one limit, also when they race."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.kv import KeyValue

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, subjects
from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, Usage
from switchyard.common.providers import BreakerRecord, RateRecord
from switchyard.executor.providers.base import ProviderCall, Reply
from switchyard.executor.providers.testing import ScriptedProvider
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerState
from switchyard.executor.resilience.limits import Limit, LimitGuard
from switchyard.executor.resilience.shared import KVBreakers, KVRateLimits

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def test_replicas_share_one_breaker(js: nats.js.JetStreamContext) -> None:
    bucket = await kv.bucket(js, subjects.KV_BREAKERS)
    clock = Clock()
    config = BreakerConfig(failure_threshold=5, open_s=10.0, half_open_probes=1)
    changes: list[BreakerState] = []
    replicas = [
        KVBreakers(bucket, config, clock=clock, on_change=lambda _k, s: changes.append(s)) for _ in range(3)
    ]
    key = "down/gpt-4o:latest"  # ':' is not a KV key character: the key is made safe
    # Five failures seen by different replicas, concurrently, open it: no update is lost.
    await asyncio.gather(*(replicas[n % 3].record_failure(key) for n in range(5)))
    for r in replicas:
        assert await r.state(key) is BreakerState.OPEN
        assert not await r.allow(key)
    assert changes == [BreakerState.OPEN]
    clock.now += 4.0
    assert [await r.reopens_in(key) for r in replicas] == [6.0, 6.0, 6.0]  # the cool-down left, for all
    raw, _ = await kv.read(bucket, kv.safe_key(key))
    assert raw is not None and BreakerRecord.model_validate_json(raw).failures == 5

    clock.now += 6.0  # cool-down over: exactly one probe among all replicas racing for it
    granted = await asyncio.gather(*(r.allow(key) for r in replicas for _ in range(4)))
    assert sum(granted) == 1
    assert await replicas[0].reopens_in(key) is None  # half-open, its probe out: when it ends is not known
    await replicas[2].record_success(key)
    assert all([await r.state(key) is BreakerState.CLOSED for r in replicas])
    assert await replicas[0].allow(key)


async def test_a_failed_probe_opens_it_again_for_everyone(js: nats.js.JetStreamContext) -> None:
    bucket = await kv.bucket(js, subjects.KV_BREAKERS)
    clock = Clock()
    a, b = (KVBreakers(bucket, BreakerConfig(failure_threshold=1, open_s=5.0), clock=clock) for _ in range(2))
    await a.record_failure("p/m")
    clock.now += 5.0
    assert await b.allow("p/m")
    await b.record_failure("p/m")
    assert await a.state("p/m") is BreakerState.OPEN and not await a.allow("p/m")


async def test_replicas_deciding_on_mirrors_still_share_one_breaker(js: nats.js.JetStreamContext) -> None:
    bucket = await kv.bucket(js, subjects.KV_BREAKERS)
    clock = Clock()
    config = BreakerConfig(failure_threshold=3, open_s=10.0, half_open_probes=1)
    # A long ttl: within this test a replica learns of another's change only through its watch.
    mirrors = [kv.Mirror(bucket, ttl_s=600.0) for _ in range(3)]
    for m in mirrors:
        await m.start()
    try:
        replicas = [KVBreakers(bucket, config, clock=clock, mirror=m) for m in mirrors]
        key = "mirrored/gpt-4o"
        assert all([await r.allow(key) for r in replicas])  # closed: each has read (and now mirrors) it
        await asyncio.gather(*(replicas[n % 3].record_failure(key) for n in range(3)))
        for r in replicas:
            for _ in range(100):  # the watch delivers the change within milliseconds
                if await r.state(key) is BreakerState.OPEN:
                    break
                await asyncio.sleep(0.02)
            assert await r.state(key) is BreakerState.OPEN
            assert not await r.allow(key)
        clock.now += 10.0  # the probe is a write: still exactly one among the replicas racing for it
        granted = await asyncio.gather(*(r.allow(key) for r in replicas for _ in range(4)))
        assert sum(granted) == 1
    finally:
        for m in mirrors:
            await m.stop()


async def test_a_mirror_whose_watch_is_gone_reads_again_after_its_ttl(js: nats.js.JetStreamContext) -> None:
    bucket = await kv.bucket(js, subjects.KV_BREAKERS)
    clock = Clock()
    mirror = kv.Mirror(bucket, ttl_s=1.0, clock=clock)
    await bucket.put("ttl-key", b"one")
    await mirror.start()
    assert await mirror.get("ttl-key") == b"one"
    await mirror.stop()  # no more watch: what it holds goes stale
    await bucket.put("ttl-key", b"two")
    await asyncio.sleep(0.1)
    assert await mirror.get("ttl-key") == b"one"
    clock.now += 1.0
    assert await mirror.get("ttl-key") == b"two"
    assert await mirror.get("never-written") is None


async def test_a_rate_limit_holds_across_replicas(js: nats.js.JetStreamContext) -> None:
    bucket = await kv.bucket(js, subjects.KV_RATE_LIMITS)
    clock = Clock()
    limits = {"openai": Limit(rpm=10), "openai/gpt-4o": Limit(tpm=1000)}
    replicas = [KVRateLimits(bucket, limits, clock=clock) for _ in range(4)]
    granted = await asyncio.gather(*(replicas[n % 4].try_acquire("openai", tokens=1) for n in range(40)))
    assert sum(granted) == 10  # not 10 per replica
    clock.now += 6.0  # a tenth of a minute refills one request
    assert await replicas[1].try_acquire("openai", tokens=1)
    assert not await replicas[2].try_acquire("openai", tokens=1)
    assert await replicas[0].try_acquire("openai/gpt-4o", tokens=600)
    assert not await replicas[3].try_acquire("openai/gpt-4o", tokens=600)
    assert await replicas[3].try_acquire("unlimited", tokens=10**9)


async def test_many_concurrent_calls_in_one_process_all_get_through_the_shared_bucket(
    js: nats.js.JetStreamContext,
) -> None:
    # 64 tasks of one executor taking the same model's bucket at once: they queue in-process instead of
    # colliding with each other until compare-and-set gives up (and the limit is skipped).
    bucket = await kv.bucket(js, subjects.KV_RATE_LIMITS)
    limits = KVRateLimits(bucket, {"busy": Limit(rpm=10_000)}, clock=Clock())
    granted = await asyncio.gather(*(limits.try_acquire("busy", tokens=1) for _ in range(64)))
    assert all(granted)
    raw, revision = await kv.read(bucket, kv.safe_key("busy"))
    assert raw is not None and revision is not None
    await limits.close()  # the unused lease goes back: the bucket is down by exactly the calls made
    raw, after = await kv.read(bucket, kv.safe_key("busy"))
    assert raw is not None and RateRecord.model_validate_json(raw).buckets["rpm"].level == 10_000 - 64
    assert after is not None and after - revision == 1


async def _level(bucket: KeyValue, key: str, kind: str = "rpm") -> float:
    raw, _ = await kv.read(bucket, kv.safe_key(key))
    assert raw is not None
    return RateRecord.model_validate_json(raw).buckets[kind].level


@pytest.fixture
async def replicas_js(nats_server: NatsServer) -> AsyncIterator[list[nats.js.JetStreamContext]]:
    """Three connections, as three executor processes would have."""
    ncs = [await nats.connect(nats_server.url) for _ in range(3)]
    yield [nc.jetstream() for nc in ncs]
    for nc in ncs:
        await nc.close()


async def test_leased_limits_admit_exactly_the_limit_across_replicas(
    replicas_js: list[nats.js.JetStreamContext],
) -> None:
    """600 calls over three replicas (each its own connection and leases) against 150 rpm (and 100,000
    tpm): exactly 150 get through (near the limit a lease is one call, as the compare-and-set per call
    was), and after the hand-back the bucket is empty, not short by anyone's leftover lease."""
    clock = Clock()
    limits = {"m": Limit(rpm=150, tpm=100_000)}
    buckets = [await kv.bucket(js, subjects.KV_RATE_LIMITS) for js in replicas_js]
    replicas = [KVRateLimits(b, limits, clock=clock) for b in buckets]
    for r in replicas:
        await r.start()

    async def one(n: int) -> bool:
        await asyncio.sleep(random.random() * 0.05)
        return await replicas[n % 3].try_acquire("m", tokens=250)

    granted = await asyncio.gather(*(one(n) for n in range(600)))
    assert sum(granted) == 150
    for r in replicas:
        await r.close()
    assert await _level(buckets[0], "m") == 0
    assert await _level(buckets[0], "m", "tpm") == 100_000 - 150 * 250


async def test_far_from_the_limit_calls_cost_no_round_trip_and_idle_leases_go_back(
    js: nats.js.JetStreamContext,
) -> None:
    bucket = await kv.bucket(js, subjects.KV_RATE_LIMITS)
    limits = KVRateLimits(bucket, {"far": Limit(rpm=100_000)}, clock=Clock())
    await limits.start()
    assert await limits.try_acquire("far", tokens=1)
    _, revision = await kv.read(bucket, kv.safe_key("far"))
    assert await _level(bucket, "far") == 100_000 - 17  # one call and a lease of 16
    for _ in range(5):
        assert await limits.try_acquire("far", tokens=1)
    assert (await kv.read(bucket, kv.safe_key("far")))[1] == revision  # no write for those five
    for _ in range(94):
        assert await limits.try_acquire("far", tokens=1)
        await asyncio.sleep(0)  # lets a background refill run, as between tasks
    _, after = await kv.read(bucket, kv.safe_key("far"))
    assert revision is not None and after is not None and after - revision <= 12  # 100 calls, not 100 writes
    await asyncio.sleep(0.5)  # idle for longer than 200 ms: the upkeep hands the lease back
    assert await _level(bucket, "far") == 100_000 - 100
    await limits.close()


async def test_a_crashed_replica_s_lease_refills_and_a_lowered_limit_holds_at_once(
    js: nats.js.JetStreamContext,
) -> None:
    bucket = await kv.bucket(js, subjects.KV_RATE_LIMITS)
    clock = Clock()
    crashed = KVRateLimits(bucket, {"m": Limit(rpm=6000)}, clock=clock)
    assert await crashed.try_acquire("m", tokens=1)
    assert await _level(bucket, "m") == 6000 - 17  # one call and a lease of 16, never handed back
    # As far as the bucket knows the lease was spent: it refills at the limit's rate, so the 16 units
    # are back after 16 / 6000 of a minute.
    clock.now += 16 * 60 / 6000
    other = KVRateLimits(bucket, {"m": Limit(rpm=6000)}, clock=clock)
    assert await other.leases.store.read("m#rpm") == 1  # only the call that was made
    # A replica restarted with a lowered limit honours it at once: the level is clipped to the new
    # capacity, whatever was stored before, and near the limit every lease is exactly one call.
    lowered = KVRateLimits(bucket, {"m": Limit(rpm=5)}, clock=clock)
    assert sum([await lowered.try_acquire("m", tokens=1) for _ in range(8)]) == 5
    assert await _level(bucket, "m") == 0


async def test_read_all_lists_every_live_key_of_a_bucket(js: nats.js.JetStreamContext) -> None:
    """From the stream's subjects, not a watch: a watch's end marker can overtake values on their way."""
    bucket = await kv.bucket(js, "SY_TEST_READ_ALL")
    assert await kv.read_all(bucket) == {}
    for name in ("plain", "oai", "ant", "gem"):
        await bucket.put(name, name.encode())
    await bucket.put("oai", b"again")  # history 1: one value per key
    await bucket.delete("gem")
    assert await kv.read_all(bucket) == {"plain": b"plain", "oai": b"again", "ant": b"ant"}
    assert sorted(await kv.keys(bucket)) == ["ant", "gem", "oai", "plain"]  # gem: its delete marker


async def _guarded(
    replicas_js: list[nats.js.JetStreamContext], key: str, tpm: int, prompt: int, completion: int
) -> tuple[KeyValue, list[KVRateLimits], list[LimitGuard]]:
    """One started `KVRateLimits` per replica under `key`'s tpm limit (no refill), each behind a guard of
    a provider whose every answer used `prompt` + `completion` tokens."""
    buckets = [await kv.bucket(js, subjects.KV_RATE_LIMITS) for js in replicas_js]
    replicas = [KVRateLimits(b, {key: Limit(tpm=tpm)}, clock=Clock()) for b in buckets]
    for r in replicas:
        await r.start()
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
    answer = Reply(content="ok", finish_reason="stop", model="m", usage=usage)
    return buckets[0], replicas, [LimitGuard(ScriptedProvider(answer), r, keys=(key,)) for r in replicas]


def _agent_call(max_tokens: int) -> ProviderCall:
    """A 100-token prompt (as estimated) and a coding agent's max_tokens."""
    return ProviderCall(
        model="m", messages=(ChatMessage(role="user", content="x" * 400),), max_tokens=max_tokens
    )


async def test_shared_tpm_buckets_keep_what_calls_used_not_their_max_tokens(
    replicas_js: list[nats.js.JetStreamContext],
) -> None:
    """Three replicas, 60 calls of a coding agent (a 100-token prompt estimated, max_tokens 50,000; each
    used 1,120 tokens) against 400,000 tpm: each call is admitted on its worst case and keeps only what it
    used, so all 60 get through (before: 7), and after the hand-back the shared bucket is down by exactly
    what was used, from every replica, once."""
    bucket, replicas, guards = await _guarded(replicas_js, "anthropic/sonnet", 400_000, 1_100, 20)
    call = _agent_call(50_000)

    async def one(n: int) -> None:
        await asyncio.sleep(random.random() * 0.05)
        await guards[n % 3].request(call)

    await asyncio.gather(*(one(n) for n in range(60)))
    for r in replicas:
        await r.close()
    assert await _level(bucket, "anthropic/sonnet", "tpm") == 400_000 - 60 * 1_120


async def test_settled_calls_near_a_shared_limit_admit_exactly_what_the_bucket_holds(
    replicas_js: list[nats.js.JetStreamContext],
) -> None:
    """Near the limit (a lease is one call) each call's worst case is checked against the shared bucket
    and its settlement goes straight back to it: calls of 30,100 tokens' worst case using 10,000, taken in
    turn by three replicas from 100,000 tpm (no refill), are admitted while 30,100 are left: 7 of them
    (30,000 left after), and the bucket ends at exactly 100,000 less what they used."""
    bucket, replicas, guards = await _guarded(replicas_js, "m", 100_000, 9_000, 1_000)
    call = _agent_call(30_000)
    admitted = 0
    for n in range(10):
        try:
            await guards[n % 3].request(call)
            admitted += 1
        except ProviderError as error:
            assert error.kind == "rate_limited"
    for r in replicas:
        await r.close()
    assert admitted == 7
    assert await _level(bucket, "m", "tpm") == 100_000 - 7 * 10_000
