"""Circuit breakers per provider/model: CLOSED -> OPEN after N consecutive failures -> HALF_OPEN after a
cool-down -> one probe call -> CLOSED on success, OPEN again on failure.

`Breakers` is the interface the executor uses; `LocalBreakers` keeps the state in this process,
`shared.KVBreakers` in JetStream KV with compare-and-set, so replicas agree. Both run the same state
machine (the pure functions below) on a `BreakerRecord`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, TypeVar

from switchyard.common.errors import ProviderError
from switchyard.common.providers import BreakerRecord
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    stream_any,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import embedder_of
from switchyard.executor.resilience.deadline import Clock

# Errors that say something about the provider's health. The others (bad request, context too long,
# content policy) are about the request: the provider answered properly. A timeout `cut_short` by its
# task's deadline says nothing either way (`BreakerGuard._failed`).
HEALTH_FAILURES = frozenset(
    {"rate_limited", "overloaded", "timeout", "network", "bad_response", "auth", "quota_exhausted"}
)
R = TypeVar("R")
C = TypeVar("C", ProviderCall, EmbeddingCall)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    open_s: float = 60.0
    half_open_probes: int = 1


class Breakers(Protocol):
    async def allow(self, key: str) -> bool:
        """Whether a call may go out now; in HALF_OPEN, True hands out one of the probe slots."""
        ...

    async def record_success(self, key: str) -> None: ...

    async def record_failure(self, key: str) -> None: ...

    async def release(self, key: str) -> None:
        """A call let through went nowhere (refused before it was sent): its probe slot, if it held one,
        goes back, and nothing is learnt about the provider."""
        ...

    async def state(self, key: str) -> BreakerState: ...

    async def reopens_in(self, key: str) -> float | None:
        """Seconds until an open breaker lets a probe through (None: it is not open, or a probe is out)."""
        ...


# The state machine as pure functions on a record, shared by the in-process and the KV implementation.


def admit(record: BreakerRecord, now: float, config: BreakerConfig) -> tuple[bool, BreakerRecord]:
    """Whether a call may go out, and the record after handing out (or refusing) the permission."""
    if record.state == BreakerState.CLOSED:
        return True, record
    r = record.model_copy()
    if r.state == BreakerState.OPEN:
        if now - r.opened_at < config.open_s:
            return False, record
        r.state, r.probes = BreakerState.HALF_OPEN, 0
    # HALF_OPEN: a probe that never reported back (its task was cancelled) frees its slot after open_s.
    if r.probes and now - r.probe_started >= config.open_s:
        r.probes = 0
    if r.probes >= config.half_open_probes:
        return False, r
    r.probes += 1
    r.probe_started = now
    return True, r


def succeeded(record: BreakerRecord) -> BreakerRecord:
    if record.state == BreakerState.CLOSED and record.failures == 0:
        return record
    return record.model_copy(update={"state": BreakerState.CLOSED, "failures": 0, "probes": 0})


def released(record: BreakerRecord) -> BreakerRecord:
    if record.state != BreakerState.HALF_OPEN or not record.probes:
        return record
    return record.model_copy(update={"probes": record.probes - 1})


def failed(record: BreakerRecord, now: float, config: BreakerConfig) -> BreakerRecord:
    r = record.model_copy(update={"failures": record.failures + 1})
    if r.state == BreakerState.HALF_OPEN or r.failures >= config.failure_threshold:
        r.state, r.opened_at, r.probes, r.open_s = BreakerState.OPEN, now, 0, config.open_s
    return r


def state_of(record: BreakerRecord, now: float, config: BreakerConfig) -> BreakerState:
    if record.state == BreakerState.OPEN and now - record.opened_at >= config.open_s:
        return BreakerState.HALF_OPEN
    return BreakerState(record.state)


def reopens_in(record: BreakerRecord, now: float, config: BreakerConfig) -> float | None:
    """Seconds until `admit` lets a probe through an open breaker; None when it is not open (closed, or
    half-open with its probe out: when that probe ends is not known)."""
    if record.state != BreakerState.OPEN:
        return None
    left = config.open_s - (now - record.opened_at)
    return left if left > 0 else None


OnChange = Callable[[str, BreakerState], None]


class LocalBreakers:
    """In-process breakers. Not thread-safe: used from one event loop."""

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._records: dict[str, BreakerRecord] = {}

    def _set(self, key: str, record: BreakerRecord) -> None:
        old = self._records.get(key)
        self._records[key] = record
        if self._on_change is not None and (old.state if old else BreakerState.CLOSED) != record.state:
            self._on_change(key, BreakerState(record.state))

    def _get(self, key: str) -> BreakerRecord:
        return self._records.get(key) or BreakerRecord(open_s=self.config.open_s)

    async def allow(self, key: str) -> bool:
        allowed, record = admit(self._get(key), self._clock(), self.config)
        self._set(key, record)
        return allowed

    async def record_success(self, key: str) -> None:
        self._set(key, succeeded(self._get(key)))

    async def record_failure(self, key: str) -> None:
        self._set(key, failed(self._get(key), self._clock(), self.config))

    async def release(self, key: str) -> None:
        self._set(key, released(self._get(key)))

    async def state(self, key: str) -> BreakerState:
        return state_of(self._get(key), self._clock(), self.config)

    async def reopens_in(self, key: str) -> float | None:
        return reopens_in(self._get(key), self._clock(), self.config)


class BreakerGuard:
    """A provider behind a breaker: refused (kind `circuit_open`) while open, and every outcome reported.

    A call let through a breaker that is not closed is its probe, and is given at most `probe_s` (the
    executor's own time for a call, SWITCHYARD_CALL_TIMEOUT_S), however long its task may wait (a long
    answer's task lets one call take minutes): a provider that failed repeatedly and still hangs is judged,
    and the task moved on to its next model, within the usual limit. A timeout there is the provider's (it
    had a call's whole time) and opens the breaker again. A call cut by us (its client's cancellation, its
    task's deadline or idle limit, a race it lost) teaches nothing either way: a probe's slot goes back, so
    the next call probes at once instead of after another cool-down."""

    def __init__(
        self, inner: Provider, breakers: Breakers, *, key: str, probe_s: float | None = None
    ) -> None:
        self._inner = inner
        self._breakers = breakers
        self._key = key
        self._probe_s = probe_s

    async def _admit(self) -> None:
        """Refused while open, with when it lets a probe through as the error's retry-after: a task whose
        every candidate is behind an open breaker fails busy (503 with Retry-After), so clients wait for
        the cool-down instead of retrying at once into the same refusal."""
        if not await self._breakers.allow(self._key):
            wait = await self._breakers.reopens_in(self._key)
            raise provider_error(
                "circuit_open", f"{self._key}: circuit open after repeated failures", retry_after=wait
            )

    async def _failed(self, error: ProviderError) -> None:
        # Refused before it went out, or cut by its task's shortened deadline (a client that waits less
        # than the model takes: its choice, not the provider's failure, and the breaker is every tenant's):
        # neither a success nor a failure of the provider.
        if not error.sent or error.cut_short:
            await self._breakers.release(self._key)
        elif error.kind in HEALTH_FAILURES:
            await self._breakers.record_failure(self._key)
        else:
            await self._breakers.record_success(self._key)

    async def _bounded(self, call: C) -> C:
        """`call`, or, when it is a probe longer than `probe_s`, `call` within it (a stream: each wait for a
        chunk, and so its first output). A breaker's state is read only for such a long call."""
        limit = self._probe_s
        if limit is None or (call.timeout_s is not None and call.timeout_s <= limit):
            return call
        if await self._breakers.state(self._key) is BreakerState.CLOSED:
            return call
        return replace(call, timeout_s=limit)

    async def _guarded(self, call: C, send: Callable[[C], Awaitable[R]]) -> R:
        await self._admit()
        try:
            reply = await send(await self._bounded(call))
        except ProviderError as error:
            await self._failed(error)
            raise
        except asyncio.CancelledError:
            await self._breakers.release(self._key)
            raise
        await self._breakers.record_success(self._key)
        return reply

    async def request(self, call: ProviderCall) -> Reply:
        return await self._guarded(call, self._inner.request)

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        return await self._guarded(call, lambda bounded: embedder_of(self._inner, self._key).embed(bounded))

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        await self._admit()
        try:
            call = await self._bounded(call)
            async for part in stream_any(self._inner, call):
                if isinstance(part, Reply):
                    await self._breakers.record_success(self._key)
                yield part
        except ProviderError as error:
            await self._failed(error)
            raise
        except asyncio.CancelledError:
            await self._breakers.release(self._key)
            raise
