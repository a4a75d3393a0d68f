"""Leases of counter headroom (switchyard.common.leases) on a real nats-server: replicas (each its own
connection, as separate processes would have) admit from local leases, and the sum stays exact."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import pytest
from nats.aio.client import Client

from switchyard.cli.processes import NatsServer
from switchyard.common.leases import IntCounters, Leases, SlotTable
from switchyard.common.wants import Want, take_all
from switchyard.gateway.limits.counters import counter_bucket

pytestmark = pytest.mark.integration


@pytest.fixture
async def connections(nats_server: NatsServer) -> AsyncIterator[list[Client]]:
    ncs = [await nats.connect(nats_server.url) for _ in range(3)]
    yield ncs
    for nc in ncs:
        await nc.close()


async def _counters(nc: Client) -> IntCounters:
    return IntCounters(await counter_bucket(nc.jetstream(), "test-leases", ttl_s=3600))


async def _slots(nc: Client, *, ttl_s: float = 30.0) -> SlotTable:
    return SlotTable(await counter_bucket(nc.jetstream(), "test-leases", ttl_s=3600), ttl_s=ttl_s)


async def test_three_replicas_admit_exactly_the_limit(connections: list[Client]) -> None:
    """600 concurrent takes over three replicas against a limit of 150: exactly 150 granted, and the
    stored counter says 150 once the leases are handed back."""
    replicas = [Leases(await _counters(nc)) for nc in connections]

    async def one(leases: Leases) -> bool:
        await asyncio.sleep(random.random() * 0.05)
        granted, _ = await leases.take("req.org.t.1", 1, ceiling=150)
        return granted

    results = await asyncio.gather(*(one(replicas[i % 3]) for i in range(600)))
    assert sum(results) == 150
    for leases in replicas:
        await leases.close()
    assert await replicas[0].store.read("req.org.t.1") == 150


async def test_most_takes_cost_no_round_trip_and_give_backs_stay_exact(connections: list[Client]) -> None:
    """Far from the ceiling a take leases spare room (min(cap, room / divisor) requests' worth); tokens
    given back after use return to the lease; what is stored after the hand-back is exactly what is in use."""
    store = await _counters(connections[0])
    leases = Leases(store)
    granted, used = await leases.take("tok.org.t.1", 100, ceiling=1_000_000)
    assert granted and used == 100
    assert await store.read("tok.org.t.1") == 100 * 17  # 100 needed + 16 x 100 spare
    in_use = 100
    for _ in range(15):  # served by the lease: no store writes
        assert leases.take_local("tok.org.t.1", 100, ceiling=1_000_000) is not None
        in_use += 100
    assert await store.read("tok.org.t.1") == 1700
    for _ in range(10):  # each used 30 of its 100
        await leases.give("tok.org.t.1", 70)
        in_use -= 70
    await leases.close()
    assert await store.read("tok.org.t.1") == in_use


async def test_near_the_ceiling_every_take_is_exact(connections: list[Client]) -> None:
    store = await _counters(connections[0])
    leases = Leases(store)
    assert (await leases.take("req.user.u.1", 1, ceiling=10))[0]
    assert await store.read("req.user.u.1") == 1  # 9 left is less than 16 requests' worth: no spare
    await leases.give("req.user.u.1", 1)  # a give-back near the ceiling goes straight to the store
    assert await store.read("req.user.u.1") == 0


async def test_an_idle_lease_is_handed_back_within_250_ms(connections: list[Client]) -> None:
    store = await _counters(connections[0])
    leases = Leases(store)
    await leases.start()
    try:
        assert (await leases.take("req.global.1", 1, ceiling=10_000))[0]
        assert await store.read("req.global.1") == 17
        taken = time.monotonic()
        while await store.read("req.global.1") != 1:
            assert time.monotonic() - taken < 0.5, "the idle lease was not handed back"
            await asyncio.sleep(0.01)
        assert time.monotonic() - taken <= 0.3
    finally:
        await leases.close()


async def test_a_refused_request_costs_nothing(connections: list[Client]) -> None:
    store = await _counters(connections[0])
    leases = Leases(store)
    await store.add("tok.user.u.1", 95)
    wants = [Want(leases, "req.user.u.1", 1, 1000), Want(leases, "tok.user.u.1", 10, 100)]
    results = await take_all(wants)
    assert [ok for ok, _ in results] == [True, False]
    assert results[1][1] == 95  # what the refusal saw
    await leases.close()
    assert await store.read("req.user.u.1") == 0
    assert await store.read("tok.user.u.1") == 95


async def test_a_lower_ceiling_hands_the_lease_back(connections: list[Client]) -> None:
    """An emergency throttle lowers the global limit: units leased under the old one are not used."""
    store = await _counters(connections[0])
    leases = Leases(store)
    assert (await leases.take("req.global.2", 1, ceiling=10_000))[0]
    assert await store.read("req.global.2") == 17
    assert leases.take_local("req.global.2", 1, ceiling=1) is None
    granted, used = await leases.take("req.global.2", 1, ceiling=1)
    assert (granted, used) == (False, 1)
    assert await store.read("req.global.2") == 1


async def test_a_crashed_replicas_concurrency_slots_come_back_after_the_ttl(
    connections: list[Client],
) -> None:
    crashed = Leases(await _slots(connections[0], ttl_s=1.0))
    alive = Leases(await _slots(connections[1], ttl_s=1.0))
    for _ in range(5):
        assert (await crashed.take("conc.org.t", 1, ceiling=5))[0]
    assert not (await alive.take("conc.org.t", 1, ceiling=5))[0]
    # the crashed replica never gives back nor renews: its slots expire
    await asyncio.sleep(1.1)
    assert (await alive.take("conc.org.t", 1, ceiling=5))[0]
    assert await alive.store.read("conc.org.t") == 1


async def test_a_live_replica_keeps_its_slots_past_the_ttl(connections: list[Client]) -> None:
    holder = Leases(await _slots(connections[0], ttl_s=0.6))
    other = Leases(await _slots(connections[1], ttl_s=0.6))
    await holder.start()
    try:
        for _ in range(3):
            assert (await holder.take("conc.org.u", 1, ceiling=3))[0]
        await asyncio.sleep(1.5)  # renewed every ttl/3
        assert await other.store.read("conc.org.u") == 3
        assert not (await other.take("conc.org.u", 1, ceiling=3))[0]
        for _ in range(3):
            await holder.give("conc.org.u", 1)
        assert await other.store.read("conc.org.u") == 0
    finally:
        await holder.close()


async def test_shutdown_hands_back_every_unused_unit(connections: list[Client]) -> None:
    slots = await _slots(connections[0])
    leases = Leases(slots)
    for _ in range(3):
        assert (await leases.take("conc.org.v", 1, ceiling=1000))[0]
    assert await slots.read("conc.org.v") == 17  # one take of 1 + 16 spare: 3 in use, 14 free
    await leases.give("conc.org.v", 1)
    await leases.close()
    assert await slots.read("conc.org.v") == 2


async def test_a_half_used_lease_is_refilled_beside_a_take_that_goes_to_the_store(
    connections: list[Client],
) -> None:
    """Counters of one request refill together: a take that must go to the store anyway tops up the
    request's other half-used leases in the same round trip, so later requests rarely wait for one."""
    store = await _counters(connections[0])
    leases = Leases(store)
    assert (await leases.take("req.a.1", 1, ceiling=10_000))[0]  # 1 + 16 spare
    for _ in range(9):
        assert leases.take_local("req.a.1", 1, ceiling=10_000) is not None
    results = await take_all([Want(leases, "req.a.1", 1, 10_000), Want(leases, "req.b.1", 1, 10_000)])
    assert [ok for ok, _ in results] == [True, True]
    assert leases.free("req.a.1") == 6 + 16
    assert await store.read("req.a.1") == 17 + 16
    await leases.close()
    assert await store.read("req.a.1") == 11
    assert await store.read("req.b.1") == 1


async def test_a_half_used_lease_is_refilled_in_the_background(connections: list[Client]) -> None:
    """With the upkeep running, the take that uses half a lease starts a refill no request waits for."""
    store = await _counters(connections[0])
    leases = Leases(store)
    await leases.start()
    try:
        assert (await leases.take("req.c.1", 1, ceiling=10_000))[0]  # 1 + 16 spare
        for _ in range(9):
            assert leases.take_local("req.c.1", 1, ceiling=10_000) is not None  # 7 left: half used
        deadline = time.monotonic() + 1.0
        while leases.free("req.c.1") < 7 + 16:
            assert time.monotonic() < deadline, "no background refill"
            await asyncio.sleep(0.005)
        assert await store.read("req.c.1") == 17 + 16
    finally:
        await leases.close()
    assert await store.read("req.c.1") == 10


async def test_a_slot_count_from_before_slot_tables_is_replaced(connections: list[Client]) -> None:
    slots = await _slots(connections[0])
    await slots.kv.put("conc.org.w", b"3")  # what gateways before slot tables stored
    assert await slots.read("conc.org.w") == 0
    leases = Leases(slots)
    assert (await leases.take("conc.org.w", 1, ceiling=2))[0]
    assert await slots.read("conc.org.w") == 1


async def test_another_replicas_unused_spare_never_turns_a_request_away(connections: list[Client]) -> None:
    """Replica A leases spare room while far from the ceiling, then gets no more requests; replica B
    fills the rest and reaches the ceiling with A's spare still unused. B's refusal is confirmed after
    the idle-return time, by which A has handed its spare back: B gets the last units, and the limit
    (64) is reached exactly. Without the confirmation B would stop at 64 less A's spare."""
    a = Leases(await _counters(connections[0]))
    b = Leases(await _counters(connections[1]))
    await a.start()
    await b.start()
    try:
        assert (await a.take("req.org.t.2", 1, ceiling=64))[0]
        spare = await a.store.read("req.org.t.2") - 1
        assert spare > 0, "far from the ceiling a take leases spare room"
        granted = [(await b.take("req.org.t.2", 1, ceiling=64))[0] for _ in range(64)]
        assert sum(granted) == 63, "B gets everything A does not use, A's spare included"
        assert granted[-1] is False  # the 65th request overall: refused, after the confirmation
    finally:
        await a.close()
        await b.close()
    assert await a.store.read("req.org.t.2") == 64


def _held_up(returning: asyncio.Event) -> Callable[[], Awaitable[None]]:
    """A `before_return` hook that says a hand-back has begun and holds it up for 0.2 s before the store
    write, as the gateway's in-flight list write can."""

    async def before_return() -> None:
        returning.set()
        await asyncio.sleep(0.2)

    return before_return


async def test_shutdown_during_an_idle_hand_back_loses_no_unit(connections: list[Client]) -> None:
    """`close()` arriving while the upkeep is handing an idle lease back (here held up before the store
    write, as the gateway's in-flight list can hold it) waits for that hand-back instead of cutting it off
    after the lease was emptied and before the store heard of it: the stored counter ends at what is in
    use, not short of the lease."""
    store = await _counters(connections[0])
    returning = asyncio.Event()
    leases = Leases(store, before_return=_held_up(returning))
    await leases.start()
    assert (await leases.take("req.global.3", 1, ceiling=10_000))[0]
    assert await store.read("req.global.3") == 17
    await asyncio.wait_for(returning.wait(), 1.0)  # the idle lease's hand-back has begun
    await leases.close()
    assert await store.read("req.global.3") == 1
    assert leases.free("req.global.3") == 0


async def test_a_request_gone_during_a_lease_hand_back_loses_no_unit(connections: list[Client]) -> None:
    """A take under a lowered ceiling hands the old lease back first; the request going away meanwhile
    (its task cancelled) does not cut the hand-back off after the lease was emptied."""
    store = await _counters(connections[1])
    returning = asyncio.Event()
    leases = Leases(store, before_return=_held_up(returning))
    assert (await leases.take("req.global.4", 1, ceiling=10_000))[0]
    assert await store.read("req.global.4") == 17
    request = asyncio.create_task(leases.take("req.global.4", 1, ceiling=5_000))
    await asyncio.wait_for(returning.wait(), 1.0)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await leases.close()
    assert await store.read("req.global.4") == 1


async def test_a_caller_gone_during_a_give_to_the_store_loses_no_unit(connections: list[Client]) -> None:
    """Units given back to the store (no lease here to keep them) whose caller goes away meanwhile (a call
    cancelled mid-way) still reach the store: before, the cancellation cut the write off and the units
    stayed counted until the counter's window ended."""
    store = await _counters(connections[2])
    assert await store.add("req.global.5", 5) == 5  # five units in use, taken by another replica's lease
    returning = asyncio.Event()
    leases = Leases(store, before_return=_held_up(returning))
    giving = asyncio.create_task(leases.give("req.global.5", 5))
    await asyncio.wait_for(returning.wait(), 1.0)
    giving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await giving
    await leases.close()
    assert await store.read("req.global.5") == 0
