"""Instrumentation as a wrapper: every call that went out is reported with its outcome, latency, time to
first token and usage. Unexpected exceptions from an adapter become `bad_response` errors here, so the
layers above only ever see the taxonomy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from switchyard.common.errors import ProviderError
from switchyard.common.events import Usage
from switchyard.executor.providers.base import (
    OUTPUT,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    estimated_usage,
    stream_any,
)
from switchyard.executor.providers.errors import provider_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallRecord:
    provider: str
    model: str
    outcome: str  # "ok" or an error kind
    latency_ms: float
    ttft_ms: float | None = None
    error: str | None = None
    usage: Usage | None = None
    usage_estimated: bool = False  # a cancelled call: the prompt (and any text received) is counted here


OnCall = Callable[[CallRecord], Awaitable[None]]


class RecordingProvider:
    def __init__(
        self,
        inner: Provider,
        *,
        provider: str,
        model: str,
        on_call: OnCall,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._inner = inner
        self._provider = provider
        self._model = model
        self._on_call = on_call
        self._clock = clock

    def _ms(self, since: float) -> float:
        return round((self._clock() - since) * 1000.0, 3)

    async def _report(
        self,
        started: float,
        *,
        error: ProviderError | None = None,
        reply: Reply | None = None,
        ttft_ms: float | None = None,
    ) -> None:
        await self._on_call(
            CallRecord(
                provider=self._provider,
                model=self._model,
                outcome="ok" if error is None else error.kind,
                latency_ms=self._ms(started),
                ttft_ms=ttft_ms,
                error=None if error is None else error.message,
                usage=None if reply is None else reply.usage,
            )
        )

    async def _cancelled(self, started: float, call: ProviderCall, text: str, ttft_ms: float | None) -> None:
        """A call stopped by us (a parallel loser, a deadline): the upstream already spent the prompt's
        tokens, and any text it sent, so the call is recorded with an estimate of them."""
        await self._on_call(
            CallRecord(
                provider=self._provider,
                model=self._model,
                outcome="cancelled",
                latency_ms=self._ms(started),
                ttft_ms=ttft_ms,
                usage=estimated_usage(call, text),
                usage_estimated=True,
            )
        )

    def _taxonomy(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        log.exception("%s adapter raised outside the taxonomy", self._provider)
        return provider_error("bad_response", f"{self._provider}: {type(exc).__name__}: {exc}")

    async def request(self, call: ProviderCall) -> Reply:
        started = self._clock()
        try:
            reply = await self._inner.request(call)
        except asyncio.CancelledError:
            await self._cancelled(started, call, "", None)
            raise
        except Exception as exc:
            error = self._taxonomy(exc)
            await self._report(started, error=error)
            if error is exc:
                raise
            raise error from exc
        await self._report(started, reply=reply)
        return reply

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        started = self._clock()
        ttft_ms: float | None = None
        text: list[str] = []
        parts = stream_any(self._inner, call)
        try:
            async for part in parts:
                if isinstance(part, OUTPUT):  # the first token, reasoning or text
                    text.append(part.text)
                    if ttft_ms is None:
                        ttft_ms = self._ms(started)
                if isinstance(part, Reply):
                    await self._report(started, reply=part, ttft_ms=ttft_ms)
                yield part
        except asyncio.CancelledError:
            await parts.aclose()  # cut between parts (CancelGuard): the upstream's stream closes now
            await self._cancelled(started, call, "".join(text), ttft_ms)
            raise
        except Exception as exc:
            error = self._taxonomy(exc)
            await self._report(started, error=error, ttft_ms=ttft_ms)
            if error is exc:
                raise
            raise error from exc
