"""Provider limits: requests and tokens per minute as token buckets, per provider key. When a bucket is
empty the call is not made and the next candidate is tried (kind `rate_limited`, not retried, not held
against the provider's breaker): queueing blindly behind a limit only adds latency.

A call is admitted only if the tpm bucket holds its worst case (the prompt's estimate and its whole
`max_tokens`), and then settles to what it used (`RateLimits.settle`), as providers count: OpenAI takes
max_tokens at request time and counts the tokens used; Anthropic's input limit leaves out cache reads and
its output limit counts the output made. A coding agent asking for 32,000-64,000 max_tokens and answering
in a few hundred keeps a few hundred of them.

`RateLimits` is the interface; `LocalRateLimits` keeps the buckets in this process. Buckets shared by
replicas (JetStream KV with compare-and-set) can replace it behind the same interface.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import BaseModel, Field

from switchyard.common.errors import ProviderError
from switchyard.common.events import Usage
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    ToolCallDelta,
    estimated_embedding_usage,
    estimated_prompt,
    stream_any,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import embedder_of
from switchyard.executor.resilience.deadline import Clock

DEFAULT_OUTPUT_TOKENS = 256  # what a call without max_tokens is assumed to spend
R = TypeVar("R")


class Limit(BaseModel):
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="prompt + completion tokens per minute")


class RateLimits(Protocol):
    async def try_acquire(self, key: str, *, tokens: int) -> bool:
        """Takes one request and `tokens` tokens from `key`'s buckets, or nothing when either is short."""
        ...

    async def settle(self, key: str, *, taken: int, used: int) -> None:
        """A call admitted by `try_acquire(key, tokens=taken)` used `used` tokens: its tpm bucket gets back
        what it did not use (never past its capacity) or, when it used more, gives that up as well (never
        below empty: the call was made, nothing is refused). Its request stays taken."""
        ...

    def set_limits(self, limits: dict[str, Limit]) -> None:
        """Follows a new limit table (a reloaded policy): a key whose limit is unchanged keeps its
        buckets as they are; a changed one keeps its level (what is left), clipped to a lowered capacity
        and refilling at the new rate; a key no longer listed is not limited."""
        ...


@dataclass
class _Bucket:
    capacity: float
    level: float
    at: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.at) * self.capacity / 60.0)
        self.at = now


class LocalRateLimits:
    def __init__(self, limits: dict[str, Limit], *, clock: Clock = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, key: str, kind: str, capacity: int) -> _Bucket:
        bucket = self._buckets.get((key, kind))
        if bucket is None:
            bucket = self._buckets[(key, kind)] = _Bucket(capacity, capacity, self._clock())
        bucket.refill(self._clock())
        return bucket

    def set_limits(self, limits: dict[str, Limit]) -> None:
        """As `RateLimits.set_limits`: a new limit is no fresh allowance. A limit dropped (a key, or its
        rpm or tpm) drops its bucket."""
        now = self._clock()
        for (key, kind), bucket in list(self._buckets.items()):
            limit = limits.get(key)
            capacity = None if limit is None else (limit.rpm if kind == "rpm" else limit.tpm)
            if capacity is None:
                del self._buckets[(key, kind)]
            elif capacity != bucket.capacity:
                bucket.refill(now)
                bucket.capacity = capacity
                bucket.level = min(bucket.level, capacity)
        self._limits = limits

    async def try_acquire(self, key: str, *, tokens: int) -> bool:
        limit = self._limits.get(key)
        if limit is None:
            return True
        wanted = [(self._bucket(key, "rpm", limit.rpm), 1.0)] if limit.rpm else []
        if limit.tpm:
            wanted.append((self._bucket(key, "tpm", limit.tpm), float(min(tokens, limit.tpm))))
        if any(bucket.level < amount for bucket, amount in wanted):
            return False
        for bucket, amount in wanted:
            bucket.level -= amount
        return True

    async def settle(self, key: str, *, taken: int, used: int) -> None:
        limit = self._limits.get(key)
        if limit is None or not limit.tpm:
            return
        back = min(taken, limit.tpm) - min(used, limit.tpm)
        if back:
            bucket = self._bucket(key, "tpm", limit.tpm)
            bucket.level = min(max(bucket.level + back, 0.0), bucket.capacity)


def prompt_tokens(call: ProviderCall) -> int:
    """The prompt's estimate (`estimated_prompt`), what a call is taken to have read when it failed."""
    return estimated_prompt(call)


def expected_tokens(call: ProviderCall) -> int:
    """A call's worst case: its prompt and all the output it may make."""
    return prompt_tokens(call) + (call.max_tokens or DEFAULT_OUTPUT_TOKENS)


def expected_embedding_tokens(call: EmbeddingCall) -> int:
    """The inputs' tokens: an embedding has no output."""
    return estimated_embedding_usage(call).prompt_tokens


class LimitGuard:
    """Admits a call under each of `keys` (a model id, its provider) in turn: the first whose limit is
    spent refuses it, and the tokens taken under the earlier keys go back (the call was not sent; its
    request stays taken: a refused call is rare and the buckets refill). An admitted call settles under
    every key to what it used: its reply's usage (`cache_reads`: whether the provider's limits count
    tokens read from its prompt cache; Anthropic's do not); a call that failed before any output, its
    prompt's estimate (nothing when it was not sent); a stream cut, its prompt's estimate and what it
    sent (about four characters a token)."""

    def __init__(
        self, inner: Provider, limits: RateLimits, *, keys: tuple[str, ...], cache_reads: bool = True
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._keys = keys
        self._cache_reads = cache_reads

    async def _admit(self, tokens: int) -> None:
        for n, key in enumerate(self._keys):
            if not await self._limits.try_acquire(key, tokens=tokens):
                await self._settle(self._keys[:n], tokens, 0)
                raise provider_error("rate_limited", f"{key}: this executor's rpm/tpm limit", retryable=False)

    async def _settle(self, keys: tuple[str, ...], taken: int, used: int) -> None:
        if taken != used:
            for key in keys:
                await self._limits.settle(key, taken=taken, used=used)

    def _used(self, usage: Usage) -> int:
        used = usage.prompt_tokens + usage.completion_tokens
        return used if self._cache_reads else used - usage.cache_read_tokens

    async def _settled(
        self, taken: int, tried: int, work: Callable[[], Awaitable[R]], used: Callable[[R], int]
    ) -> R:
        """`work` admitted on `taken` and settled to `used` of its result; to `tried` when it failed
        after it was sent, to nothing when it was not."""
        await self._admit(taken)
        spent = tried
        try:
            result = await work()
            spent = used(result)
            return result
        except ProviderError as error:
            if not error.sent:
                spent = 0
            raise
        finally:
            await self._settle(self._keys, taken, spent)

    async def request(self, call: ProviderCall) -> Reply:
        prompt = prompt_tokens(call)
        taken = prompt + (call.max_tokens or DEFAULT_OUTPUT_TOKENS)
        # failed before any output: the provider may have read the prompt
        return await self._settled(
            taken, prompt, lambda: self._inner.request(call), lambda r: self._used(r.usage)
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        inner = embedder_of(self._inner, self._keys[0])
        taken = expected_embedding_tokens(call)
        return await self._settled(taken, taken, lambda: inner.embed(call), lambda r: r.usage.prompt_tokens)

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        prompt = prompt_tokens(call)
        taken = prompt + (call.max_tokens or DEFAULT_OUTPUT_TOKENS)
        await self._admit(taken)
        used: int | None = None
        sent = 0  # characters of output sent so far
        try:
            async for part in stream_any(self._inner, call):
                if isinstance(part, Reply):
                    used = self._used(part.usage)
                else:
                    sent += len(part.arguments) if isinstance(part, ToolCallDelta) else len(part.text)
                yield part
        except ProviderError as error:
            if not error.sent:
                used = 0
            raise
        finally:
            await self._settle(self._keys, taken, prompt + sent // 4 if used is None else used)
