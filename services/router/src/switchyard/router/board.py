"""The router's view of live state in JetStream KV: model statistics (which the router replicas write
with compare-and-set as provider-call events arrive, see `stats.py`), the executors' breakers and
rate-limit buckets, and tenants' budget headroom. Reads are cached for `refresh_s`, so a decision costs
no KV round trip."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import ValidationError

from switchyard.common import kv, kv_guard, subjects
from switchyard.common.budgets import read_headroom
from switchyard.common.policy import Policy
from switchyard.common.providers import BreakerRecord, RateRecord
from switchyard.router.health import ModelSignal, ModelStats, effective_success

log = logging.getLogger(__name__)
Clock = Callable[[], float]
T = TypeVar("T", ModelStats, BreakerRecord, RateRecord)
MAX_KEYS = 4096  # models' KV keys remembered (policies are reloaded, so bounded)


def breaker_key(provider: str, upstream: str) -> str:
    """The executor's breaker key for a model (see executor.execution.breaker_key), made KV-safe."""
    return kv.safe_key(f"{provider}/{upstream}")


class HealthBoard:
    def __init__(self, js: JetStreamContext, *, refresh_s: float = 1.0, clock: Clock = time.time) -> None:
        self._js = js
        self._refresh_s = refresh_s
        self._clock = clock
        self._buckets: dict[str, KeyValue] = {}
        self._at = float("-inf")
        self._stats: dict[str, ModelStats] = {}
        self._breakers: dict[str, BreakerRecord] = {}
        self._rates: dict[str, RateRecord] = {}
        self._budgets: dict[str, tuple[float, float | None]] = {}
        self._keys: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    async def _bucket(self, name: str) -> KeyValue:
        if name not in self._buckets:
            self._buckets[name] = await kv.bucket(self._js, name)
        return self._buckets[name]

    async def _refresh(self) -> None:
        stats = await kv.read_all(await self._bucket(subjects.KV_ROUTING_STATS))
        breakers = await kv.read_all(await self._bucket(subjects.KV_BREAKERS))
        rates = await kv.read_all(await self._bucket(subjects.KV_RATE_LIMITS))
        self._stats = _parse(stats, ModelStats)
        self._breakers = _parse(breakers, BreakerRecord)
        self._rates = _parse(rates, RateRecord)

    async def signals(self, policy: Policy) -> dict[str, ModelSignal]:
        """Per model id: EMA success (its penalty fading with time), latency, breaker, rate headroom."""
        now = self._clock()
        if now - self._at >= self._refresh_s:
            self._at = now
            try:
                await self._refresh()
            except Exception as exc:  # routing goes on with the last view; health is advice, not a gate
                log.warning("could not refresh provider health from KV: %s", exc)
        out: dict[str, ModelSignal] = {}
        for spec in policy.models:
            model_key, breaker_k, provider_key = self._keys_of(spec.id, spec.provider, spec.upstream)
            stats = self._stats.get(model_key)
            breaker = self._breakers.get(breaker_k)
            rates = [self._rates.get(provider_key), self._rates.get(model_key)]
            headrooms = [r.headroom(now) for r in rates if r is not None]
            out[spec.id] = ModelSignal(
                success=None
                if stats is None
                else effective_success(stats, now=now, recovery_s=policy.health.recovery_s),
                latency_ms=None if stats is None else stats.latency_ms,
                samples=0 if stats is None else stats.samples,
                breaker="closed" if breaker is None else breaker.effective_state(now),
                rate_headroom=min(headrooms) if headrooms else None,
            )
        return out

    def _keys_of(self, model: str, provider: str, upstream: str) -> tuple[str, str, str]:
        """A model's KV keys (statistics and model rate limit, breaker, provider rate limit), worked out
        once: `safe_key` hashes every name with a '/', four per model on every decision."""
        keys = self._keys.get((model, provider, upstream))
        if keys is None:
            if len(self._keys) >= MAX_KEYS:
                self._keys.clear()
            keys = (kv.safe_key(model), breaker_key(provider, upstream), kv.safe_key(provider))
            self._keys[(model, provider, upstream)] = keys
        return keys

    async def headroom(self, tenant_id: str) -> float | None:
        """The tenant's budget headroom in USD (None: no limit), cached like the rest."""
        now = self._clock()
        cached = self._budgets.get(tenant_id)
        if cached is not None and now - cached[0] < self._refresh_s:
            return cached[1]
        try:
            value = await read_headroom(await self._bucket(subjects.KV_BUDGETS), tenant_id)
        except kv_guard.ForgedEntry:  # not the gateway's: what was read before holds (none: no limit known)
            value = cached[1] if cached is not None else None
        self._budgets[tenant_id] = (now, value)
        return value


def _parse(raw: dict[str, bytes], model: type[T]) -> dict[str, T]:
    out: dict[str, T] = {}
    for key, value in raw.items():
        try:
            out[key] = model.model_validate_json(value)
        except ValidationError as exc:
            log.warning("ignoring unreadable KV entry %s: %s", key, exc)
    return out
