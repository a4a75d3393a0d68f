"""Breakers and rate limits shared by every executor replica, in JetStream KV with compare-and-set.

Same interfaces and the same state machine as the in-process versions (`LocalBreakers`,
`LocalRateLimits`); every change is a read-modify-write that succeeds only if nobody wrote in between,
so five failures seen by five replicas open the breaker once, and a limit of 60 rpm is 60 rpm across all
of them. Times are wall-clock (replicas may run on different hosts). The fast path (a closed breaker
with no failures) writes nothing and, with a `kv.Mirror` of the bucket, reads nothing from the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import nats.errors
from nats.js.kv import KeyValue

from switchyard.common import kv
from switchyard.common.errors import SwitchyardError
from switchyard.common.providers import BreakerRecord, BucketLevel, RateRecord
from switchyard.executor.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    OnChange,
    admit,
    failed,
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
    ) -> None:
        self._kv = bucket
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        # With a mirror (a watch on the bucket), a step that changes nothing (a closed breaker admitting a
        # call or hearing of a success: nearly every call) is decided without a round trip; any change is
        # still a compare-and-set on the stored value.
        self._mirror = mirror

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
            result, before, after = await kv.update(self._kv, kv.safe_key(key), change)
        except KV_ERRORS as exc:
            log.warning("breaker %s: shared state unavailable, letting the call through: %s", key, exc)
            return True
        if before != after and self._on_change is not None:
            self._on_change(key, BreakerState(after))
        return result

    async def allow(self, key: str) -> bool:
        return await self._apply(key, lambda r: admit(r, self._clock(), self.config))

    async def record_success(self, key: str) -> None:
        await self._apply(key, lambda r: (True, succeeded(r)))

    async def record_failure(self, key: str) -> None:
        await self._apply(key, lambda r: (True, failed(r, self._clock(), self.config)))

    async def state(self, key: str) -> BreakerState:
        if self._mirror is not None:
            return state_of(self._load(await self._mirror.get(kv.safe_key(key))), self._clock(), self.config)
        raw, _ = await kv.read(self._kv, kv.safe_key(key))
        return state_of(self._load(raw), self._clock(), self.config)


class KVRateLimits:
    """rpm and tpm token buckets per key (a provider or a model id), one KV entry per key."""

    def __init__(self, bucket: KeyValue, limits: dict[str, Limit], *, clock: Clock = time.time) -> None:
        self._kv = bucket
        self._limits = limits
        self._clock = clock

    async def try_acquire(self, key: str, *, tokens: int) -> bool:
        limit = self._limits.get(key)
        if limit is None:
            return True
        wanted = {k: float(v) for k, v in (("rpm", limit.rpm), ("tpm", limit.tpm)) if v}
        amounts = {"rpm": 1.0, "tpm": float(min(tokens, limit.tpm or tokens))}

        def change(raw: bytes | None) -> tuple[bytes | None, bool]:
            now = self._clock()
            record = RateRecord.model_validate_json(raw) if raw else RateRecord()
            levels: dict[str, BucketLevel] = {}
            for kind, capacity in wanted.items():
                bucket = record.buckets.get(kind)
                level = capacity if bucket is None or bucket.capacity != capacity else bucket.refilled(now)
                if level < amounts[kind]:
                    return None, False
                levels[kind] = BucketLevel(capacity=capacity, level=level - amounts[kind], at=now)
            return RateRecord(buckets=levels).model_dump_json().encode(), True

        try:
            return await kv.update(self._kv, kv.safe_key(key), change)
        except KV_ERRORS as exc:
            log.warning("rate limit %s: shared state unavailable, letting the call through: %s", key, exc)
            return True
