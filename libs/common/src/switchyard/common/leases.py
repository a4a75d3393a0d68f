"""Local leases of shared counter headroom: a replica takes a chunk of a counter's room in one
compare-and-set and admits from it in memory, so most requests cost no KV round trip.

A counter in JetStream KV holds everything every replica has taken: units in use plus each replica's
unused lease. The sum therefore never passes the ceiling, whichever replica admits. A take that its
lease cannot cover goes to the store for what is missing plus some spare, sized by what is left:
`min(cap, room / divisor)` multiples of the request's own size, where `room` is the ceiling less the
stored value. Near the ceiling (less than `divisor` requests' worth of room) the spare is zero: every
take and every give-back is a compare-and-set of exactly what the request needs, as without leases, so
a limit is reached exactly. A lease nobody took from for `idle_s` is handed back (a background task, at
most `idle_s + tick` after the last take), as is everything at `close()`; and a refusal is confirmed by a
second take after that long, so another replica's leftover units never turn a request away.

Stores: `IntCounters` (an integer per key, for windows and budgets: a replica that crashes strands its
unused lease until the key's window ends; never more than one spare chunk) and `SlotTable` (per key, a
table of replicas' holdings with an expiry each replica refreshes while it holds units: concurrency
slots, whose key has no window, come back `ttl_s` after their replica stopped refreshing).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from nats.js.kv import KeyValue

from switchyard.common import kv_repair
from switchyard.common.background import Background, cancel

log = logging.getLogger(__name__)

Spare = Callable[[int], int]  # the stored value -> extra units to take beside what is needed


class Store(Protocol):
    async def take(self, key: str, need: int, *, ceiling: int | None, spare: Spare) -> tuple[int, int]:
        """Adds `need + spare(value)` unless `value + need` passes `ceiling`: (units added, 0 when
        refused; the value now)."""
        ...

    async def add(self, key: str, delta: int) -> int:
        """Adds `delta` (negative: gives back), never below zero; returns the value now."""
        ...

    async def read(self, key: str) -> int: ...

    async def renew(self, key: str) -> None:
        """Renews the expiry of what this replica holds of `key` (a no-op where nothing expires)."""
        ...


def grant(value: int, need: int, ceiling: int | None, spare: Spare) -> int:
    """What a store's `take` adds to a counter at `value`: `need` and the spare, or 0 when `need` would
    pass the ceiling (or nothing is wanted). Every store decides a take with this, so all hold alike."""
    if ceiling is not None and value + need > ceiling:
        return 0
    return need + spare(value)


class IntCounters:
    """Plain integer counters (the gateway's encoding: the decimal value), by compare-and-set.

    Read through kv_guard (kv_repair.Remembered): a count the JetStream server stored on a client's
    behalf (a forger's "0" over an organisation's spend would give its budget back) is refused, and this
    replica goes on from the last count it read or wrote of the key (none: 0); its next write replaces
    the forged one."""

    expires = False

    def __init__(self, bucket: KeyValue) -> None:
        self.kv = bucket
        self._cas = kv_repair.Remembered()

    async def take(self, key: str, need: int, *, ceiling: int | None, spare: Spare) -> tuple[int, int]:
        def change(current: bytes | None) -> tuple[bytes | None, tuple[int, int]]:
            value = int(current or b"0")
            added = grant(value, need, ceiling, spare)
            if not added:
                return None, (0, value)
            return str(value + added).encode(), (added, value + added)

        return await self._cas.update(self.kv, key, change)

    async def add(self, key: str, delta: int) -> int:
        def change(current: bytes | None) -> tuple[bytes | None, int]:
            new = max(int(current or b"0") + delta, 0)
            return str(new).encode(), new

        return await self._cas.update(self.kv, key, change)

    async def read(self, key: str) -> int:
        value, _ = await self._cas.read(self.kv, key)
        return int(value or b"0")

    async def renew(self, key: str) -> None:
        return None


class SlotTable:
    """Per key `{"<replica>": [units, expires_at], ...}` (wall clock, seconds); the value is the sum of
    the entries that have not expired. Every write also drops expired entries, so a crashed replica's
    units come back `ttl_s` after its last refresh. Replicas' clocks must agree to well within `ttl_s`.
    Read through kv_guard as `IntCounters`: a forged table (a holder of every slot for ever) is refused.
    """

    expires = True

    def __init__(self, bucket: KeyValue, *, ttl_s: float = 30.0, clock: Callable[[], float] = time.time):
        self.kv = bucket
        self.ttl_s = ttl_s
        self.owner = uuid.uuid4().hex[:12]
        self._clock = clock
        self._cas = kv_repair.Remembered()

    def _live(self, current: bytes | None) -> tuple[dict[str, list[float]], float]:
        now = self._clock()
        table = orjson.loads(current) if current else {}
        if not isinstance(table, dict):  # a plain count from a gateway before slot tables: not attributable
            return {}, now
        return {k: v for k, v in table.items() if v[1] > now}, now

    def _write(self, table: dict[str, list[float]], mine: int, now: float) -> bytes:
        if mine > 0:
            table[self.owner] = [mine, round(now + self.ttl_s, 3)]
        else:
            table.pop(self.owner, None)
        return orjson.dumps(table)

    @staticmethod
    def _total(table: dict[str, list[float]]) -> int:
        return int(sum(v[0] for v in table.values()))

    async def take(self, key: str, need: int, *, ceiling: int | None, spare: Spare) -> tuple[int, int]:
        def change(current: bytes | None) -> tuple[bytes | None, tuple[int, int]]:
            table, now = self._live(current)
            value = self._total(table)
            added = grant(value, need, ceiling, spare)
            if not added:
                return None, (0, value)
            mine = int(table.get(self.owner, [0, 0])[0]) + added
            return self._write(table, mine, now), (added, value + added)

        return await self._cas.update(self.kv, key, change)

    async def add(self, key: str, delta: int) -> int:
        def change(current: bytes | None) -> tuple[bytes | None, int]:
            table, now = self._live(current)
            mine = max(int(table.get(self.owner, [0, 0])[0]) + delta, 0)
            new = self._write(table, mine, now)
            return new, self._total(orjson.loads(new))

        return await self._cas.update(self.kv, key, change)

    async def read(self, key: str) -> int:
        value, _ = await self._cas.read(self.kv, key)
        return self._total(self._live(value)[0])

    async def renew(self, key: str) -> None:
        def change(current: bytes | None) -> tuple[bytes | None, None]:
            table, now = self._live(current)
            mine = int(table.get(self.owner, [0, 0])[0])
            if not mine:
                log.warning("this replica's hold on %s expired before it was renewed", key)
                return None, None
            return self._write(table, mine, now), None

        await self._cas.update(self.kv, key, change)


@dataclass
class _Lease:
    ceiling: int | None
    until: float | None  # wall clock: the key's window ends (its leftovers are worth nothing after)
    free: int = 0  # taken from the store, not in use: what local takes come from
    held: int = 0  # taken from the store and not given back (in use + free)
    grant: int = 0  # the size of the last take from the store
    exact: bool = False  # near the ceiling: give-backs go straight to the store
    refilling: bool = False  # a background refill is on its way
    value: int = 0  # the stored value after this replica's last write
    used_at: float = 0.0
    held_at: float = 0.0  # the last renewal of this replica's hold in an expiring store
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Leases:
    """Leases of one store's counters. `take`/`give` are the hot path; `start` runs the idle return."""

    def __init__(
        self,
        store: Store,
        *,
        divisor: int = 16,
        cap: int = 16,
        idle_s: float = 0.2,
        tick_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        returned: Callable[[str, int], None] | None = None,
        before_return: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.divisor = divisor
        self.cap = cap
        self.idle_s = idle_s
        self.tick_s = tick_s
        self._clock = clock
        self._returned = returned  # told (key, units in use as seen here) after an idle return
        # awaited before any units go back to the store; it may refuse (raise): they stay in the lease
        # (the gateway writes its in-flight list there first: `switchyard.gateway.inflight`)
        self._before_return = before_return
        self._leases: dict[str, _Lease] = {}
        self._task: asyncio.Task[None] | None = None
        self._background = Background()
        self._refresh_s = getattr(store, "ttl_s", 0.0) / 3 if getattr(store, "expires", False) else 0.0

    # -- the hot path ---------------------------------------------------------------------------------
    def take_local(self, key: str, need: int, *, ceiling: int | None) -> int | None:
        """Units in use as seen here after taking `need` from this replica's lease; None when the lease
        cannot cover it (then `take`)."""
        lease = self._leases.get(key)
        if lease is None or lease.ceiling != ceiling or lease.free < need:
            return None if need > 0 or lease is None else lease.value - lease.free
        lease.free -= need
        lease.used_at = self._clock()
        if 2 * lease.free < lease.grant and self._task is not None and not lease.exact:
            self._refill_soon(key, lease, need)
        return lease.value - lease.free

    def _refill_soon(self, key: str, lease: _Lease, need: int) -> None:
        """Half the lease is used: top it up in the background, so no request waits for the refill."""
        if lease.refilling or lease.lock.locked():
            return
        lease.refilling = True
        self._background.spawn(self.refill(key, need))

    async def take(
        self, key: str, need: int, *, ceiling: int | None, until: float | None = None
    ) -> tuple[bool, int]:
        """(granted, units in use as seen here: the stored value less this replica's own free lease).

        A refusal by the store is confirmed once more after the idle-return time: the room may be another
        replica's spare that nobody there is using, which it hands back within `idle_s + tick_s`. So a
        limit is reached exactly across replicas, at the price of a refusal taking that long."""
        granted, seen = await self._take(key, need, ceiling=ceiling, until=until)
        if granted or self._task is None or self.idle_s <= 0:
            return granted, seen
        await asyncio.sleep(self.idle_s + 2 * self.tick_s)
        return await self._take(key, need, ceiling=ceiling, until=until)

    async def _take(
        self, key: str, need: int, *, ceiling: int | None, until: float | None
    ) -> tuple[bool, int]:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease(ceiling, until)
        lease.used_at = self._clock()
        if lease.ceiling != ceiling:  # the ceiling moved (an emergency throttle): start afresh
            lease.ceiling = ceiling
            await self._hand_back(key, lease)
        if need <= 0:
            return True, lease.value - lease.free
        if lease.free >= need:
            lease.free -= need
            return True, lease.value - lease.free
        async with lease.lock:
            have = min(lease.free, need)  # a take before ours may have refilled the lease
            lease.free -= have
            short = need - have
            if not short:
                return True, lease.value - lease.free
            try:
                added, value = await self.store.take(
                    key, short, ceiling=ceiling, spare=self._spare(ceiling, short, need)
                )
            except BaseException:
                lease.free += have
                raise
            lease.value = value
            if not added:
                lease.free += have
                lease.exact = True
                return False, value - lease.free
            lease.free += added - short
            lease.held += added
            lease.grant = added
            lease.exact = ceiling is not None and added == short
            return True, value - lease.free

    def low(self, key: str) -> bool:
        """Whether this lease is half used and far from the ceiling: worth a `refill` beside a take that
        goes to the store anyway (one round trip for both), so requests rarely wait for one."""
        lease = self._leases.get(key)
        return (
            lease is not None and not lease.exact and 2 * lease.free < lease.grant and not lease.lock.locked()
        )

    async def refill(self, key: str, need: int) -> None:
        """Tops a half-used lease up with spare room (sized as a take of `need` would); never raises."""
        lease = self._leases.get(key)
        if lease is None:
            return
        if lease.lock.locked():  # a take is at the store already
            lease.refilling = False
            return
        async with lease.lock:
            lease.refilling = False
            if lease.exact or 2 * lease.free >= lease.grant:  # refilled (or near the ceiling) meanwhile
                return
            try:
                added, value = await self.store.take(
                    key, 0, ceiling=lease.ceiling, spare=self._spare(lease.ceiling, 0, need)
                )
            except Exception as exc:
                log.warning("could not refill the lease of %s: %s", key, exc)
                return
            lease.value = value
            lease.free += added
            lease.held += added
            if added:
                lease.grant = added
            else:
                lease.exact = lease.ceiling is not None

    def _spare(self, ceiling: int | None, short: int, need: int) -> Spare:
        def spare(value: int) -> int:
            if ceiling is None:
                return self.cap * need
            room = ceiling - value - short
            return max(min(self.cap, room // (self.divisor * need)), 0) * need

        return spare

    def give_local(self, key: str, amount: int) -> bool:
        """Gives `amount` back into this replica's lease; False when it must go to the store (`give`)."""
        lease = self._leases.get(key)
        if lease is None or lease.exact or amount < 0 or lease.free + amount > 2 * max(lease.grant, 1):
            return amount == 0
        lease.free += amount
        return True

    async def give(self, key: str, amount: int) -> None:
        """Gives back `amount` units (negative: more were used than taken). Into the lease while far from
        the ceiling; to the store near it, or when the lease would grow past about two takes' worth."""
        if self.give_local(key, amount):
            return
        lease = self._leases.get(key)
        if lease is not None and amount < 0 and lease.free >= -amount:
            lease.free += amount
            return
        if lease is not None and not lease.exact and amount > 0:  # keep one take's worth, return the rest
            keep = max(min(lease.grant - lease.free, amount), 0)
            lease.free += keep
            amount -= keep
        # Taken from the caller's hands: the store must now hear of the units whatever becomes of the
        # caller (a call cancelled mid-way), or they are stranded there. The write runs on its own, awaited
        # here, and `close` waits for it (as a hand-back's).
        await asyncio.shield(self._background.spawn(self._give(key, lease, amount)))

    async def _give(self, key: str, lease: _Lease | None, amount: int) -> None:
        if amount > 0 and self._before_return is not None:
            try:
                await self._before_return()
            except Exception as exc:
                if lease is None:
                    raise
                lease.free += amount  # kept here: handed back once the store may have it
                log.warning("keeping %d units of %s for now: %s", amount, key, exc)
                return
        value = await self.store.add(key, -amount)
        if lease is not None:
            lease.held = max(lease.held - amount, 0)
            lease.value = value

    def on_returned(self, returned: Callable[[str, int], None]) -> None:
        self._returned = returned

    def free(self, key: str) -> int:
        lease = self._leases.get(key)
        return 0 if lease is None else lease.free

    # -- handing back -----------------------------------------------------------------------------------
    async def _hand_back(self, key: str, lease: _Lease) -> None:
        amount, lease.free = lease.free, 0
        if amount:
            # Emptied the lease: the store must now hear of the units whatever becomes of the caller (a
            # request that went away, the upkeep stopped), or they are stranded there for good. The write
            # runs on its own, awaited here, and `close` waits for it.
            await asyncio.shield(self._background.spawn(self._return(key, lease, amount)))

    async def _return(self, key: str, lease: _Lease, amount: int) -> None:
        try:
            if self._before_return is not None:
                await self._before_return()
            lease.value = await self.store.add(key, -amount)
            lease.held = max(lease.held - amount, 0)
        except Exception as exc:  # kept: the next idle pass tries again
            lease.free += amount
            log.warning("could not hand back %d units of %s: %s", amount, key, exc)
            return
        if self._returned is not None:
            self._returned(key, lease.value - lease.free)

    async def tidy(self, *, everything: bool = False) -> None:
        """Hands back idle leases (all of them with `everything`), restates holdings before they expire,
        and forgets leases with nothing left."""
        now, wall = self._clock(), time.time()
        work = []
        for key, lease in list(self._leases.items()):
            if lease.lock.locked():
                continue
            if lease.until is not None and wall >= lease.until:
                del self._leases[key]  # the window is over: its leftovers are worth nothing
                continue
            idle_for = now - lease.used_at
            if lease.free and (everything or idle_for >= self.idle_s):
                work.append(self._hand_back(key, lease))
            elif self._refresh_s and lease.held and now - lease.held_at >= self._refresh_s:
                lease.held_at = now
                work.append(self._renew(key))
            elif not lease.free and idle_for > 10 * self.idle_s and not (self._refresh_s and lease.held):
                del self._leases[key]
        if work:
            await asyncio.gather(*work)

    async def _renew(self, key: str) -> None:
        try:
            await self.store.renew(key)
        except Exception as exc:
            log.warning("could not renew the hold on %s: %s", key, exc)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="leases")

    async def _run(self) -> None:
        held_at = self._clock()
        for lease in self._leases.values():
            lease.held_at = held_at
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tidy()
            except Exception:
                log.exception("lease upkeep failed")

    async def close(self) -> None:
        """Stops the upkeep and hands every unused unit back (at shutdown, once requests are done); a
        hand-back the upkeep had begun is finished, not cut off (`_hand_back`)."""
        await cancel(self._task)
        self._task = None
        await self._background.drain()
        await self.tidy(everything=True)
