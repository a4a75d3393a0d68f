"""Retrying one model: exponential backoff with jitter, honouring Retry-After, within the task deadline.

Only errors whose kind is retryable are retried, and only before any text was streamed (text already
sent to a client cannot be taken back). A Retry-After longer than `max_retry_after_s` is not waited for:
the next candidate is tried instead.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.base import (
    OUTPUT,
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
from switchyard.executor.resilience.deadline import Deadline

Sleep = Callable[[float], Awaitable[None]]
Call = TypeVar("Call", ProviderCall, EmbeddingCall)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2  # after the first try, per candidate
    base_s: float = 0.25
    cap_s: float = 4.0
    max_retry_after_s: float = 10.0

    def delay(
        self, retry: int, error: ProviderError, *, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before retry number `retry` (1-based), or None to give up on this model."""
        if not error.retryable or retry > self.max_retries:
            return None
        backoff = min(self.cap_s, self.base_s * 2.0 ** (retry - 1))
        jittered = backoff / 2 + rand() * backoff / 2  # "equal jitter": spread out, never near zero
        if error.retry_after is None:
            return jittered
        if error.retry_after > self.max_retry_after_s:
            return None
        return max(error.retry_after, jittered)


class RetryingProvider:
    def __init__(
        self,
        inner: Provider,
        policy: RetryPolicy,
        *,
        deadline: Deadline,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        own_call_s: float | None = None,
    ) -> None:
        """`own_call_s`: the time the executor gives one call on its own (SWITCHYARD_CALL_TIMEOUT_S); a
        call the deadline leaves less is marked `short_bound` (None: none is)."""
        self._inner = inner
        self._policy = policy
        self._deadline = deadline
        self._sleep = sleep
        self._rand = rand
        self._own_call_s = own_call_s

    def _short(self, seconds: float) -> bool:
        return self._own_call_s is not None and seconds < self._own_call_s

    def _bounded(self, call: Call) -> Call:
        """A call whose timeout is shortened to what is left of the deadline, so that a cut at the deadline
        is the call's own `timeout` (recorded, not billed). Left less than a call's own time, it is
        `short_bound`: its timeout is the task's cut (`cut_short`), not charged to its breaker."""
        self._check()
        timeout_s = self._deadline.clamp(call.timeout_s)
        if timeout_s == call.timeout_s:
            return call
        return replace(call, timeout_s=timeout_s, short_bound=self._short(timeout_s))

    def _bounded_stream(self, call: ProviderCall) -> ProviderCall:
        """A stream's call: what is left of the deadline bounds it until its first output, as `_bounded`
        does a call answered whole; its reads keep their own timeout, since once output flows the task is
        bounded by its idle limit, not by this deadline (a stream started late would be cut by its first
        pause longer than what was left). That bound is short when the task's deadline is shorter than
        the executor's own, or leaves less than a call's own time."""
        self._check()
        first_output_s = self._deadline.clamp(call.first_output_s)
        short = self._deadline.tightened or self._short(first_output_s)
        return replace(call, first_output_s=first_output_s, short_bound=short)

    def _check(self) -> None:
        if self._deadline.expired():
            raise provider_error("timeout", "the task's deadline passed before this call", retryable=False)

    async def _wait(self, retry: int, error: ProviderError) -> None:
        """Sleeps before the next try, or re-raises `error` when this model should not be tried again."""
        delay = self._policy.delay(retry, error, rand=self._rand)
        if delay is None or delay >= self._deadline.remaining():
            raise error
        await self._sleep(delay)

    async def _retried(self, send: Callable[[Call], Awaitable[R]], call: Call) -> R:
        retry = 0
        while True:
            try:
                return await send(self._bounded(call))
            except ProviderError as error:
                retry += 1
                await self._wait(retry, error)

    async def request(self, call: ProviderCall) -> Reply:
        return await self._retried(self._inner.request, call)

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        return await self._retried(embedder_of(self._inner, call.model).embed, call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        retry = 0
        while True:
            sent_text = False
            try:
                async for part in stream_any(self._inner, self._bounded_stream(call)):
                    sent_text = sent_text or isinstance(part, OUTPUT)
                    yield part
                return
            except ProviderError as error:
                if sent_text:
                    raise
                retry += 1
                await self._wait(retry, error)
