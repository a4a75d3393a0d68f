"""Breakers and rate limits shared by every executor replica, in JetStream KV with compare-and-set.

Same interfaces and the same state machine as the in-process versions (`LocalBreakers`,
`LocalRateLimits`); every change is a read-modify-write that succeeds only if nobody wrote in between,
so five failures seen by five replicas open the breaker once, and a limit of 60 rpm is 60 rpm across all
of them. Times are wall-clock (replicas may run on different hosts). The fast path (a closed breaker
with no failures) writes nothing and, with a `kv.Mirror` of the bucket, reads nothing from the server.
Rate limits are taken from local leases of the shared buckets (`KVRateLimits`): a call costs no round trip
unless a lease runs out. Every read goes through kv_guard: a revision the server stored on a client's
behalf (README, Trust) is refused, and written over at once with the last real record (the breakers'
mirror and the rate limits' keeper watch for it: common/kv_repair.py), which a change reads in its place.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Literal

import nats.errors
from nats.js.kv import KeyValue

from switchyard.common import kv, kv_guard, kv_repair
from switchyard.common.errors import SwitchyardError
from switchyard.common.leases import Leases, Spare, grant
from switchyard.common.providers import BreakerRecord, BucketLevel, RateRecord
from switchyard.common.wants import Want, give_all, take_local_all
from switchyard.executor.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    OnChange,
    admit,
    failed,
    released,
    reopens_in,
    state_of,
    succeeded,
)
from switchyard.executor.resilience.limits import Limit

Clock = Callable[[], float]
log = logging.getLogger(__name__)
# KV trouble (a partition, a CAS storm) must not stop calls: breakers and limits then let calls through,
# and the provider's own errors and 429s remain the backstop.
KV_ERRORS = (SwitchyardError, nats.errors.Error, OSError, TimeoutError)


class KVBreakers:
    def __init__(
        self,
        bucket: KeyValue,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.time,
        on_change: OnChange | None = None,
        mirror: kv.Mirror | None = None,
        repairs: kv_repair.Repairs | None = None,
    ) -> None:
        self._kv = bucket
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        # With a mirror (a watch on the bucket), a step that changes nothing (a closed breaker admitting a
        # call or hearing of a success: nearly every call) is decided without a round trip; any change is
        # still a compare-and-set on the stored value.
        self._mirror = mirror
        self._repairs = repairs  # told of forged revisions by the mirror's watch (`open_breakers`)

    def _load(self, raw: bytes | None) -> BreakerRecord:
        return BreakerRecord.model_validate_json(raw) if raw else BreakerRecord(open_s=self.config.open_s)

    async def _apply(self, key: str, step: Callable[[BreakerRecord], tuple[bool, BreakerRecord]]) -> bool:
        def change(raw: bytes | None) -> tuple[bytes | None, tuple[bool, str, str]]:
            old = self._load(raw)
            result, new = step(old)
            if new == old:
                return None, (result, old.state, new.state)
            return new.model_dump_json().encode(), (result, old.state, new.state)

        try:
            if self._mirror is not None:
                new, (result, before, after) = change(await self._mirror.get(kv.safe_key(key)))
                if new is None:
                    return result
            reader = kv_guard.read_over if self._mirror is None else self._mirror.read_over
            result, before, after = await kv.update(self._kv, kv.safe_key(key), change, reader=reader)
        except KV_ERRORS as exc:
            log.warning("breaker %s: shared state unavailable, letting the call through: %s", key, exc)
            return True
        if before != after and self._on_change is not None:
            self._on_change(key, BreakerState(after))
        return result

    async def start(self) -> None:
        if self._mirror is not None:
            await self._mirror.start()
        if self._repairs is not None:
            self._repairs.start()

    async def stop(self) -> None:
        if self._repairs is not None:
            await self._repairs.stop()
        if self._mirror is not None:
            await self._mirror.stop()

    async def allow(self, key: str) -> bool:
        return await self._apply(key, lambda r: admit(r, self._clock(), self.config))

    async def record_success(self, key: str) -> None:
        await self._apply(key, lambda r: (True, succeeded(r)))

    async def record_failure(self, key: str) -> None:
        await self._apply(key, lambda r: (True, failed(r, self._clock(), self.config)))

    async def release(self, key: str) -> None:
        await self._apply(key, lambda r: (True, released(r)))

    async def state(self, key: str) -> BreakerState:
        try:
            return state_of(await self._record(key), self._clock(), self.config)
        except KV_ERRORS:  # as `allow` lets calls through: nothing known against the provider
            return BreakerState.CLOSED

    async def reopens_in(self, key: str) -> float | None:
        try:
            return reopens_in(await self._record(key), self._clock(), self.config)
        except KV_ERRORS:
            return None

    async def _record(self, key: str) -> BreakerRecord:
        if self._mirror is not None:
            return self._load(await self._mirror.get(kv.safe_key(key)))
        raw, _ = await kv_guard.read_over(self._kv, kv.safe_key(key))
        return self._load(raw)


async def open_breakers(
    bucket: KeyValue, config: BreakerConfig | None = None, *, on_change: OnChange | None = None
) -> KVBreakers:
    """The executor's breakers (started; `stop` at shutdown): with a mirror of the bucket, whose watch
    also tells of a forged revision, written over with the last real record the mirror holds (kv_repair:
    a router, which reads the bucket anew every second, would otherwise take an open breaker for closed
    until an executor changed it again)."""
    repairs = kv_repair.Repairs(bucket, lambda key: mirror.held(key), name="breakers-repairs")
    mirror = kv.Mirror(bucket, on_forged=repairs.forged)
    breakers = KVBreakers(bucket, config, on_change=on_change, mirror=mirror, repairs=repairs)
    await breakers.start()
    return breakers


class BucketStore:
    """`leases.Store` over the token buckets in KV: one `RateRecord` per limit key (a provider or a model
    id) with its "rpm" and "tpm" buckets; a lease key is `<limit key>#<kind>`. A counter's value is what is
    out of the bucket: its capacity less the refilled level, rounded up (so `value + need <= capacity`
    exactly when the level covers `need`). A request taken is spent for good (a call is a call); a
    replica's unused lease and the tokens a call did not use are given back (`add`, a negative delta
    raises the level, never past capacity; a positive one, tokens used beyond those taken, lowers it,
    never below empty). A lowered capacity clips the level at once; a raised one refills at the new
    rate."""

    expires = False

    def __init__(self, bucket: KeyValue, *, clock: Clock = time.time, reader: kv.Reader = kv_guard.read_over):
        self.kv = bucket
        self._clock = clock
        self._reader = reader
        self._keys: dict[str, tuple[str, str]] = {}

    def _split(self, key: str) -> tuple[str, str]:
        found = self._keys.get(key)
        if found is None:
            name, kind = key.rsplit("#", 1)
            found = self._keys[key] = (kv.safe_key(name), kind)
        return found

    @staticmethod
    def _level(record: RateRecord, kind: str, capacity: float | None, now: float) -> tuple[float, float]:
        """(capacity, level now) of `kind`; a bucket never written is full."""
        bucket = record.buckets.get(kind)
        if bucket is None:
            return (capacity or 0.0), (capacity or 0.0)
        if capacity is None:
            return bucket.capacity, bucket.refilled(now)
        return capacity, min(bucket.refilled(now), capacity)

    async def take(self, key: str, need: int, *, ceiling: int | None, spare: Spare) -> tuple[int, int]:
        entry, kind = self._split(key)

        def change(raw: bytes | None) -> tuple[bytes | None, tuple[int, int]]:
            now = self._clock()
            record = _record(raw)
            capacity, level = self._level(record, kind, ceiling, now)
            value = _taken(capacity, level)
            added = grant(value, need, math.floor(capacity), spare)
            if not added:
                return None, (0, value)
            record.buckets[kind] = BucketLevel(capacity=capacity, level=level - added, at=now)
            return record.model_dump_json().encode(), (added, value + added)

        return await kv.update(self.kv, entry, change, reader=self._reader)

    async def add(self, key: str, delta: int) -> int:
        entry, kind = self._split(key)

        def change(raw: bytes | None) -> tuple[bytes | None, int]:
            now = self._clock()
            record = _record(raw)
            if kind not in record.buckets:
                return None, 0
            capacity, level = self._level(record, kind, None, now)
            level = min(max(level - delta, 0.0), capacity)
            record.buckets[kind] = BucketLevel(capacity=capacity, level=level, at=now)
            return record.model_dump_json().encode(), _taken(capacity, level)

        return await kv.update(self.kv, entry, change, reader=self._reader)

    async def read(self, key: str) -> int:
        entry, kind = self._split(key)
        raw, _ = await self._reader(self.kv, entry)
        capacity, level = self._level(_record(raw), kind, None, self._clock())
        return _taken(capacity, level)

    async def renew(self, key: str) -> None:
        return None


def _record(raw: bytes | None) -> RateRecord:
    return RateRecord.model_validate_json(raw) if raw else RateRecord()


def _taken(capacity: float, level: float) -> int:
    """A bucket as a lease counter: what is out of it, rounded up (a fraction of a call is not there)."""
    return math.ceil(capacity - level - 1e-9)


class KVRateLimits:
    """rpm and tpm token buckets per key (a provider or a model id), shared through KV and taken from local
    leases (`switchyard.common.leases`): a call is admitted in memory from this replica's lease, and the
    bucket is touched by a compare-and-set only to take a new lease (in the background once half of one is
    used) or to hand an idle one back. The bucket holds what every replica has taken, so N replicas never
    pass the limit; near it (less than 16 calls' worth left) a lease is exactly one call's worth, as the
    per-call compare-and-set was. A crashed replica's unused lease (at most 16 calls' worth, at most 1/16
    of what was left) is spent as far as the bucket knows: it refills at the limit's rate, as any use.
    A call's tpm is taken on its worst case and settled to what it used (`settle`): the difference goes
    into this replica's lease far from the limit (no round trip) and straight to the bucket near it."""

    def __init__(
        self,
        bucket: KeyValue,
        limits: dict[str, Limit],
        *,
        clock: Clock = time.time,
        leases: Leases | None = None,
    ) -> None:
        self._limits = limits
        # the last real record of each bucket, written back over a forged one (kv_repair) and taken for
        # it by this replica's compare-and-sets: a forged full bucket would be a limit reset
        self._keeper = kv_repair.Keeper(bucket, name="rate-limits-kept")
        self.leases = leases or Leases(BucketStore(bucket, clock=clock, reader=self._keeper.read_over))
        self._rpm: dict[str, Want | None] = {}

    def _wants(self, key: str, limit: Limit, tokens: int) -> list[Want]:
        rpm: Want | Literal[False] | None = self._rpm.get(key, False)
        if rpm is False:
            rpm = self._rpm[key] = Want(self.leases, f"{key}#rpm", 1, limit.rpm) if limit.rpm else None
        wants = [rpm] if rpm is not None else []
        if limit.tpm:
            wants.append(Want(self.leases, f"{key}#tpm", max(min(tokens, limit.tpm), 1), limit.tpm))
        return wants

    async def try_acquire(self, key: str, *, tokens: int) -> bool:
        limit = self._limits.get(key)
        if limit is None:
            return True
        wants = self._wants(key, limit, tokens)
        local = take_local_all(wants)
        if all(t is not None for t in local):
            return True
        # One bucket at a time (rpm first): a call refused by one takes nothing from the other, so near
        # the limit a refused call costs one read, as before, and no lease churns.
        got: list[Want] = [w for w, t in zip(wants, local, strict=True) if t is not None]
        try:
            for want, seen in zip(wants, local, strict=True):
                if seen is not None:
                    continue
                granted, _ = await want.leases.take(want.key, want.need, ceiling=want.ceiling)
                if not granted:
                    await give_all(got)
                    return False
                got.append(want)
        except KV_ERRORS as exc:
            log.warning("rate limit %s: shared state unavailable, letting the call through: %s", key, exc)
        return True

    async def settle(self, key: str, *, taken: int, used: int) -> None:
        """As `RateLimits.settle`, through this replica's lease of the tpm bucket (`Leases.give`): into
        the lease while far from the limit, to the bucket near it (exact, as the take was)."""
        limit = self._limits.get(key)
        if limit is None or not limit.tpm:
            return
        back = max(min(taken, limit.tpm), 1) - min(used, limit.tpm)  # as `_wants` took it
        lease = f"{key}#tpm"
        if not back or self.leases.give_local(lease, back):
            return
        try:
            await self.leases.give(lease, back)
        except KV_ERRORS as exc:
            log.warning("rate limit %s: shared state unavailable, %d tokens not settled: %s", key, back, exc)

    def set_limits(self, limits: dict[str, Limit]) -> None:
        """As `RateLimits.set_limits`. A changed key's wants are made afresh under its new ceilings: its
        lease, taken under the old ones, goes back to the bucket at its next take (`Leases`), and the
        bucket keeps its level, clipped to a lowered capacity (`BucketStore`). A key no longer listed is
        let through, and its idle lease handed back by the upkeep. Unchanged keys keep their wants and
        leases."""
        for key in self._limits.keys() | limits.keys():
            if self._limits.get(key) != limits.get(key):
                self._rpm.pop(key, None)
        self._limits = limits

    async def start(self) -> None:
        await self._keeper.start()
        await self.leases.start()

    async def close(self) -> None:
        """Hands every unused lease back (at shutdown, once no call is in flight)."""
        try:
            await self.leases.close()
        finally:
            await self._keeper.stop()
