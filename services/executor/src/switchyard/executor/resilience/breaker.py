"""Circuit breakers per provider/model: CLOSED -> OPEN after N consecutive failures -> HALF_OPEN after a
cool-down -> one probe call -> CLOSED on success, OPEN again on failure.

`Breakers` is the interface the executor uses; `LocalBreakers` keeps the state in this process. A shared
implementation (JetStream KV with compare-and-set, so replicas agree) can replace it behind the same
interface.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.base import Provider, ProviderCall, Reply, StreamPart, stream_any
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.resilience.deadline import Clock

# Errors that say something about the provider's health. The others (bad request, context too long,
# content policy) are about the request: the provider answered properly.
HEALTH_FAILURES = frozenset({"rate_limited", "overloaded", "timeout", "network", "bad_response", "auth"})


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

    async def state(self, key: str) -> BreakerState: ...


@dataclass
class _Circuit:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probes: int = 0
    probe_started: float = 0.0


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
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, key: str) -> _Circuit:
        return self._circuits.setdefault(key, _Circuit())

    def _move(self, key: str, circuit: _Circuit, state: BreakerState) -> None:
        if circuit.state is not state:
            circuit.state = state
            if self._on_change is not None:
                self._on_change(key, state)

    async def allow(self, key: str) -> bool:
        circuit = self._circuit(key)
        now = self._clock()
        if circuit.state is BreakerState.CLOSED:
            return True
        if circuit.state is BreakerState.OPEN:
            if now - circuit.opened_at < self.config.open_s:
                return False
            self._move(key, circuit, BreakerState.HALF_OPEN)
            circuit.probes = 0
        # HALF_OPEN: a probe that never reported back (its task was cancelled) frees its slot after open_s.
        if circuit.probes and now - circuit.probe_started >= self.config.open_s:
            circuit.probes = 0
        if circuit.probes >= self.config.half_open_probes:
            return False
        circuit.probes += 1
        circuit.probe_started = now
        return True

    async def record_success(self, key: str) -> None:
        circuit = self._circuit(key)
        circuit.failures = 0
        circuit.probes = 0
        self._move(key, circuit, BreakerState.CLOSED)

    async def record_failure(self, key: str) -> None:
        circuit = self._circuit(key)
        circuit.failures += 1
        if circuit.state is BreakerState.HALF_OPEN or circuit.failures >= self.config.failure_threshold:
            circuit.opened_at = self._clock()
            circuit.probes = 0
            self._move(key, circuit, BreakerState.OPEN)

    async def state(self, key: str) -> BreakerState:
        circuit = self._circuit(key)
        if circuit.state is BreakerState.OPEN and self._clock() - circuit.opened_at >= self.config.open_s:
            return BreakerState.HALF_OPEN
        return circuit.state


class BreakerGuard:
    """A provider behind a breaker: refused (kind `circuit_open`) while open, and every outcome reported."""

    def __init__(self, inner: Provider, breakers: Breakers, *, key: str) -> None:
        self._inner = inner
        self._breakers = breakers
        self._key = key

    async def _admit(self) -> None:
        if not await self._breakers.allow(self._key):
            raise provider_error("circuit_open", f"{self._key}: circuit open after repeated failures")

    async def _failed(self, error: ProviderError) -> None:
        if error.kind in HEALTH_FAILURES:
            await self._breakers.record_failure(self._key)
        else:
            await self._breakers.record_success(self._key)

    async def request(self, call: ProviderCall) -> Reply:
        await self._admit()
        try:
            reply = await self._inner.request(call)
        except ProviderError as error:
            await self._failed(error)
            raise
        await self._breakers.record_success(self._key)
        return reply

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        await self._admit()
        try:
            async for part in stream_any(self._inner, call):
                if isinstance(part, Reply):
                    await self._breakers.record_success(self._key)
                yield part
        except ProviderError as error:
            await self._failed(error)
            raise
