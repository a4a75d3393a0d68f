"""The readers whose KV value grants, revokes or redirects something refuse a revision the server stored on
a client's behalf (real nats-server 2.15 under the embedded run's permissions). The executor's user, which
may write the breakers' bucket and only read the tenant registry (and nothing of the gateway's control,
auth-change or lockout buckets), has the server copy a value it wrote into those buckets (a direct get
answered to `$KV.<bucket>.<key>`). The tenant check (the classifier's and executor's), the gateway's
throttle, auth changes and lockout keep what they held, a forged cached answer is a miss, a forged open
breaker stops no call; their writers' puts and deletes still come through."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from nats.aio.client import Client

from switchyard.common import kv, subjects, tenants
from switchyard.common.events import Usage
from switchyard.common.providers import BreakerRecord
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerState
from switchyard.executor.resilience.shared import KVBreakers
from switchyard.gateway.access.changes import AuthChanges
from switchyard.gateway.access.lockout import BLOCK_PREFIX, Lockout
from switchyard.gateway.cache.exact import ExactStore, answer_key
from switchyard.gateway.cache.models import CachedAnswer
from switchyard.gateway.limits.control import THROTTLE_KEY, Control
from tests.support.guarded_bus import GuardedBus, forge

pytestmark = pytest.mark.integration


async def test_a_forged_registry_entry_is_refused_by_the_tenant_check(
    guarded_clients: dict[str, Client],
) -> None:
    registry = await tenants.registry_bucket(guarded_clients["gateway"].jetstream())
    await tenants.register(registry, "acme")
    await tenants.mark_kept(registry, by="gateway")
    now = [0.0]
    check = tenants.TenantCheck(lambda: registry_as_executor, mode="auto", trust_s=60.0, clock=lambda: now[0])
    registry_as_executor = await guarded_clients["executor"].jetstream().key_value(subjects.KV_TENANTS)
    await check.start()
    try:
        assert await check.refusal("acme") is None
        erased = tenants.Entry("acme", "erased").dumps()
        await forge(guarded_clients["executor"], subjects.KV_TENANTS, tenants.key_of("acme"), erased)
        active = tenants.Entry("mallory", "active").dumps()
        await forge(guarded_clients["executor"], subjects.KV_TENANTS, tenants.key_of("mallory"), active)
        assert await check.refusal("acme") is None  # the watch skipped it
        now[0] += 120.0  # past its trust: read from the server, which holds the forged revision
        assert await check.refusal("acme") is None
        assert "is no organisation" in (await check.refusal("mallory") or "")
        # the gateway's own writes go through, over the forged revision too
        assert await tenants.register(registry, "acme", name="Acme") is True
        assert await tenants.erase(registry, "acme") is True
        await asyncio.sleep(0.2)
        assert "was erased" in (await check.refusal("acme") or "")
    finally:
        await check.stop()


async def test_a_forged_throttle_is_refused_and_the_last_one_set_stays(
    guarded_clients: dict[str, Client],
) -> None:
    js = guarded_clients["gateway"].jetstream()
    operator = Control(await js.key_value(subjects.KV_GATEWAY_CONTROL))
    await operator.set_throttle(100)
    replica = Control(await js.key_value(subjects.KV_GATEWAY_CONTROL))
    await replica.start()
    try:
        await asyncio.sleep(0.2)
        assert replica.throttle == 100
        await forge(
            guarded_clients["executor"], subjects.KV_GATEWAY_CONTROL, THROTTLE_KEY, b'{"requests_per_min": 1}'
        )
        assert replica.throttle == 100
        later = Control(await js.key_value(subjects.KV_GATEWAY_CONTROL))  # a replica started since
        await later.start()
        await asyncio.sleep(0.3)
        assert later.throttle == 100
        await later.stop()
        await operator.set_throttle(None)  # the operator's switch still applies
        await asyncio.sleep(0.2)
        assert replica.throttle is None
    finally:
        await replica.stop()


async def test_a_forged_auth_change_or_block_is_refused(guarded_clients: dict[str, Client]) -> None:
    js = guarded_clients["gateway"].jetstream()
    dropped: list[tuple[str, str]] = []
    changes = AuthChanges(await js.key_value(subjects.KV_AUTH_CHANGES), lambda k, i: dropped.append((k, i)))
    lockout = Lockout(await js.key_value(subjects.KV_GATEWAY_LIMITS), None)
    await changes.start()
    await lockout.start()
    try:
        await asyncio.sleep(0.2)
        until = str(time.time() + 3600).encode()
        await forge(guarded_clients["executor"], subjects.KV_AUTH_CHANGES, "key.victim", until)
        await forge(
            guarded_clients["executor"], subjects.KV_GATEWAY_LIMITS, f"{BLOCK_PREFIX}.prefix.sk-victim", until
        )
        assert dropped == []
        assert not lockout.blocks_prefix("sk-victim")
        # the gateway's own
        await changes.announce("key", "revoked")
        await (await js.key_value(subjects.KV_GATEWAY_LIMITS)).put(f"{BLOCK_PREFIX}.prefix.sk-guess", until)
        await asyncio.sleep(0.2)
        assert dropped == [("key", "revoked"), ("key", "revoked")]  # its own cache, then the watch
        assert lockout.blocks_prefix("sk-guess")
    finally:
        await changes.stop()
        await lockout.stop()


async def test_a_forged_cached_answer_is_a_miss(guarded_clients: dict[str, Client]) -> None:
    store = ExactStore(await guarded_clients["gateway"].jetstream().key_value(subjects.KV_CACHE))
    now = time.time()
    answer = CachedAnswer(
        tenant_id="acme",
        key="k1",
        source_task_id="t1",
        model="m",
        provider="p",
        tier="standard",
        content="whatever the forger chose",
        finish_reason="stop",
        usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
        created_at=now,
        expires_at=now + 3600,
    )
    where = answer_key("acme", "k1")
    await forge(guarded_clients["executor"], subjects.KV_CACHE, where, answer.model_dump_json().encode())
    assert await store.get("acme", "k1") is None
    legit = answer.model_copy(update={"content": "the model's answer"})
    await store.put(legit)
    assert (await store.get("acme", "k1")) == legit


async def test_a_forged_open_breaker_neither_stops_calls_nor_shows_on_the_board(guarded: GuardedBus) -> None:
    """The router's user reads the breakers and writes its statistics: it has the server copy an open
    breaker it wrote there into the executor's bucket."""
    router, executor = await guarded.connect("router"), await guarded.connect("executor")
    bucket = await executor.jetstream().key_value(subjects.KV_BREAKERS)
    mirror = kv.Mirror(bucket, ttl_s=0.05)
    await mirror.start()
    breakers = KVBreakers(bucket, mirror=mirror)
    try:
        assert await breakers.allow("openai") is True
        opened = BreakerRecord(state="open", failures=99, opened_at=time.time())
        stats = await router.jetstream().key_value(subjects.KV_ROUTING_STATS)
        await stats.put("bait", opened.model_dump_json().encode())
        await router.publish(
            f"$JS.API.DIRECT.GET.KV_{subjects.KV_ROUTING_STATS}.$KV.{subjects.KV_ROUTING_STATS}.bait",
            reply=f"$KV.{subjects.KV_BREAKERS}.{kv.safe_key('openai')}",
        )
        await router.flush()
        await asyncio.sleep(0.3)  # past the mirror's trust too: read from the server
        assert await breakers.allow("openai") is True
        assert await breakers.state("openai") == BreakerState.CLOSED
        assert kv.safe_key("openai") not in await kv.read_all(
            await router.jetstream().key_value(subjects.KV_BREAKERS)
        )
        for _ in range(BreakerConfig().failure_threshold):  # the executor's own failures still open it
            await breakers.record_failure("openai")
        assert await breakers.state("openai") == BreakerState.OPEN
    finally:
        await mirror.stop()
        await router.close()
        await executor.close()


async def test_tenants_list_says_a_forged_kept_marker_in_one_line(
    guarded_clients: dict[str, Client], guarded: GuardedBus
) -> None:
    """`switchyard tenants list` (as operator) names a forged `kept` marker and what to do, instead of
    a traceback; the gateway's next write of the marker makes the listing whole again."""
    registry = await tenants.registry_bucket(guarded_clients["gateway"].jetstream())
    await tenants.register(registry, "acme")
    await forge(guarded_clients["executor"], subjects.KV_TENANTS, tenants.KEPT, b'{"by": "mallory"}')
    env = {**os.environ, "SWITCHYARD_VAR_DIR": str(guarded.var_dir)}
    env.pop("SWITCHYARD_NATS_USER", None)
    command = [sys.executable, "-m", "switchyard.cli.main", "tenants", "--nats-url", guarded.operator_url]
    command.append("list")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # after the guard's own warning, as every reader logs it
    assert (
        last.startswith("switchyard tenants: the registry's kept marker") and "was stored by the NATS" in last
    )
    await tenants.mark_kept(registry, by="gateway")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "acme\tactive" in done.stdout, done.stdout + done.stderr
