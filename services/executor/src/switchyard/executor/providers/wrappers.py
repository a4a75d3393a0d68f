"""What a task's run puts around a candidate's adapter, or in its place: `CancelGuard`, which stops a
call or a stream its task's client cancelled, and `Unconfigured`, the stand-in for a provider this
executor holds no credentials for (`run.Run.target`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from switchyard.common.errors import ProviderError
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


class CancelGuard:
    """Stops before a provider call when the task's client cancelled it, and a stream between its parts.
    The cancellation itself interrupts what is awaited, but on Python 3.11 `asyncio.wait_for` (nats-py's
    requests use it: the breaker's and limits' KV reads) returns its result instead when the reply and
    the cancellation arrive together, and the call would then run to its end; a layer under a stream
    that lost the interruption the same way would have the stream run to its end."""

    def __init__(self, inner: Provider, cancelled: Callable[[], bool]) -> None:
        self._inner = inner
        self._cancelled = cancelled

    async def request(self, call: ProviderCall) -> Reply:
        if self._cancelled():
            raise asyncio.CancelledError
        return await self._inner.request(call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        if self._cancelled():
            raise asyncio.CancelledError
        # The inner provider's own stream (the recording's), so that a cut thrown into it is recorded.
        own = getattr(self._inner, "stream", None)
        parts: AsyncGenerator[StreamPart, None] = (
            own(call) if own is not None else stream_any(self._inner, call)
        )
        async for part in parts:
            yield part
            if self._cancelled():  # heard, yet nothing was interrupted: cut it as an interruption would
                await parts.athrow(asyncio.CancelledError())

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        inner = embedder_of(self._inner, call.model)
        if self._cancelled():
            raise asyncio.CancelledError
        return await inner.embed(call)


class Unconfigured:
    """Stands in for a provider this executor holds no credentials for: fails without calling anyone."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _refused(self) -> ProviderError:
        return provider_error("auth", f"provider {self._name!r} is not configured on this executor")

    async def request(self, call: ProviderCall) -> Reply:
        raise self._refused()

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        raise self._refused()
