"""The gateway writes its own value over a forged revision at once (real nats-server under the embedded
run's permissions, real SQLite). The executor's user, which may only read the tenant registry and the
budget ceilings, has the server store revisions there (common/kv_guard.py). Readers already running keep
what they held, but a replica started since reads no value: it would refuse the organisation until the
next sync (SWITCHYARD_TENANT_SYNC_S, 300 s by default), or billing would send no budget alert until the
ceiling changed. The gateway's watches write the value over the forgery now.
- the registry: an `erased` entry for an active organisation, and `kept` emptied (a direct get's miss
  answered there);
- a budget ceiling the gateway published, replaced by a forged "no limit"."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client

from switchyard.cli.processes import NatsServer
from switchyard.common import kv_guard, subjects, tenants
from switchyard.common.background import cancel
from switchyard.common.budgets import budgets_bucket, limit_key, limits_bucket
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.leases import IntCounters, Leases, SlotTable
from switchyard.gateway.access.registry import Registry
from switchyard.gateway.app import SPEND_KEEP_S
from switchyard.gateway.budgets.service import Budgets
from switchyard.gateway.db import migrations
from switchyard.gateway.limits.control import THROTTLE_KEY, Control
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.tenants import Principal, create_tenant
from tests.support.guarded_bus import forge, restored

pytestmark = pytest.mark.integration


async def test_a_forged_registry_entry_is_written_over_from_the_database(
    guarded_clients: dict[str, Client], sqlite_url: str
) -> None:
    await migrations().upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = sessionmaker(engine)
    org = await create_tenant(sessions, name="Acme")
    bucket = await tenants.registry_bucket(guarded_clients["gateway"].jetstream())
    registry = Registry(bucket, sessions, every_s=300.0)
    await registry.start()
    try:
        key = tenants.key_of(org.id)
        first = tenants.parse((await kv_guard.read(bucket, key))[0])
        assert first is not None and first.status == "active"
        await forge(
            guarded_clients["executor"], subjects.KV_TENANTS, key, tenants.Entry(org.id, "erased").dumps()
        )
        value = await restored(bucket, key, within_s=5.0)
        assert value is not None, "the forged revision was still the newest 5 s later"
        entry = tenants.parse(value)
        assert entry is not None and (entry.status, entry.name) == ("active", "Acme")

        # the marker that makes the pipeline refuse unlisted tenants: a miss answered there is empty
        executor = guarded_clients["executor"]
        await executor.publish(
            f"$JS.API.DIRECT.GET.KV_{subjects.KV_BREAKERS}.$KV.{subjects.KV_BREAKERS}.nothing",
            reply=f"$KV.{subjects.KV_TENANTS}.{tenants.KEPT}",
        )
        await executor.flush()
        await asyncio.sleep(0.3)
        assert await restored(bucket, tenants.KEPT, within_s=5.0) is not None
        assert await tenants.is_kept(bucket)
    finally:
        await registry.stop()
        await engine.dispose()


async def test_a_forged_budget_ceiling_is_written_over_by_the_replica_that_wrote_it(
    guarded_clients: dict[str, Client],
) -> None:
    js = guarded_clients["gateway"].jetstream()
    spend = Leases(IntCounters(await counter_bucket(js, subjects.KV_SPEND, ttl_s=SPEND_KEEP_S)), divisor=64)
    limits = await limits_bucket(js)
    budgets = Budgets(spend, await budgets_bucket(js), limits=limits)
    await budgets.start()
    try:
        alice = Principal(tenant_id="acme", api_key_id="k1", user_id="alice", key_prefix="sk-1", plan="free")
        mine = budgets.accounts(alice)
        budgets.reservation(
            alice, mine, budgets.wants(mine, worst_case=1), [(True, 0)] * len(mine), worst_case=1
        )
        key = limit_key("acme", "alice")  # the free plan's daily budget: $0.50
        written = await restored(limits, key, within_s=5.0)
        assert written is not None and b'"micro_usd":500000' in written
        await forge(guarded_clients["executor"], subjects.KV_BUDGET_LIMITS, key, b'{"micro_usd":null}')
        again = await restored(limits, key, within_s=5.0)
        assert again is not None and b'"micro_usd":500000' in again
    finally:
        await spend.close()
        await budgets.drain()


async def test_the_repair_watch_stops_quietly_once_the_bus_is_gone(nats_server: NatsServer) -> None:
    """A gateway stopping after its NATS connection closed (the server gone first) stops the watch
    without an error, which would have cut its shutdown short before the other stores were released."""
    nc = await nats.connect(nats_server.url)
    bucket = await nc.jetstream().create_key_value(bucket="repair-watch")
    task = await kv_guard.on_forged(bucket, lambda _key: None, name="repair-watch")
    await asyncio.sleep(0.1)
    await nc.close()
    await cancel(task)
    assert task.done()


async def test_a_throttle_forged_past_its_history_is_written_over(guarded_clients: dict[str, Client]) -> None:
    """The control bucket keeps 5 revisions, so a replica started after one forged revision still finds
    the operator's throttle (test_forged_kv_readers.py); after 5 it found none and ran unthrottled. A
    running replica writes the throttle it holds back over them."""
    js = guarded_clients["gateway"].jetstream()
    replica = Control(await js.key_value(subjects.KV_GATEWAY_CONTROL))
    await replica.start()
    try:
        await replica.set_throttle(100)
        for _ in range(5):
            await forge(
                guarded_clients["executor"],
                subjects.KV_GATEWAY_CONTROL,
                THROTTLE_KEY,
                b'{"requests_per_min": 1}',
            )
        bucket = await js.key_value(subjects.KV_GATEWAY_CONTROL)
        await restored(bucket, THROTTLE_KEY, within_s=5.0)
        later = Control(await js.key_value(subjects.KV_GATEWAY_CONTROL))  # a replica started since
        await later.start()
        await asyncio.sleep(0.3)
        assert later.throttle == 100
        await later.stop()
    finally:
        await replica.stop()


async def test_a_forged_spend_count_is_not_taken_as_the_count(guarded_clients: dict[str, Client]) -> None:
    """The executor's user has the server store "0" as an organisation's spend: the gateway read it as
    the count and admitted a budget's worth again. A count stored by the server is refused: the replica
    goes on from the count it knew, and its next write replaces the forged one."""
    js = guarded_clients["gateway"].jetstream()
    counters = IntCounters(await counter_bucket(js, subjects.KV_SPEND, ttl_s=SPEND_KEEP_S))
    assert await counters.take("org.acme.2026-12", 100, ceiling=150, spare=lambda _v: 0) == (100, 100)
    await forge(guarded_clients["executor"], subjects.KV_SPEND, "org.acme.2026-12", b"0")
    assert await counters.take("org.acme.2026-12", 100, ceiling=150, spare=lambda _v: 0) == (0, 100)
    assert await counters.read("org.acme.2026-12") == 100
    assert await counters.take("org.acme.2026-12", 10, ceiling=150, spare=lambda _v: 0) == (10, 110)
    again = IntCounters(await js.key_value(subjects.KV_SPEND))  # another replica, from the server
    assert await again.read("org.acme.2026-12") == 110


async def test_a_forged_slot_table_holds_no_slots(guarded_clients: dict[str, Client]) -> None:
    """A concurrency slot table the server stored on a client's behalf, naming a holder of every slot
    until the year 3000, refused every request of the key for good: every write kept the entries it had
    not written. It is refused; the replica goes on from the table it last read or wrote."""
    js = guarded_clients["gateway"].jetstream()
    slots = SlotTable(await counter_bucket(js, subjects.KV_GATEWAY_LIMITS, ttl_s=3600), ttl_s=30.0)
    assert await slots.take("conc.org.acme", 1, ceiling=10, spare=lambda _v: 0) == (1, 1)
    squatter = b'{"mallory": [1000, 32503680000.0]}'
    await forge(guarded_clients["executor"], subjects.KV_GATEWAY_LIMITS, "conc.org.acme", squatter)
    assert await slots.take("conc.org.acme", 1, ceiling=10, spare=lambda _v: 0) == (1, 2)
    assert await slots.read("conc.org.acme") == 2
    again = SlotTable(await js.key_value(subjects.KV_GATEWAY_LIMITS))  # another replica, from the server
    assert await again.read("conc.org.acme") == 2
