"""Provider limits: requests and tokens per minute as token buckets, per provider key. When a bucket is
empty the call is not made and the next candidate is tried (kind `rate_limited`, not retried, not held
against the provider's breaker): queueing blindly behind a limit only adds latency.

`RateLimits` is the interface; `LocalRateLimits` keeps the buckets in this process. Buckets shared by
replicas (JetStream KV with compare-and-set) can replace it behind the same interface.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field

from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    estimate_tokens,
    estimated_embedding_usage,
    stream_any,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import embedder_of
from switchyard.executor.resilience.deadline import Clock

DEFAULT_OUTPUT_TOKENS = 256  # what a call without max_tokens is assumed to spend


class Limit(BaseModel):
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="prompt + completion tokens per minute")


class RateLimits(Protocol):
    async def try_acquire(self, key: str, *, tokens: int) -> bool:
        """Takes one request and `tokens` tokens from `key`'s buckets, or nothing when either is short."""
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


def expected_tokens(call: ProviderCall) -> int:
    prompt = estimate_tokens("\n".join(m.text() for m in call.messages))
    return prompt + (call.max_tokens or DEFAULT_OUTPUT_TOKENS)


def expected_embedding_tokens(call: EmbeddingCall) -> int:
    """The inputs' tokens: an embedding has no output."""
    return estimated_embedding_usage(call).prompt_tokens


class LimitGuard:
    """Admits a call under each of `keys` (a model id, its provider) in turn: the first whose limit is
    spent refuses it. Limits taken under an earlier key are not given back (a refused call is rare and
    the buckets refill)."""

    def __init__(self, inner: Provider, limits: RateLimits, *, keys: tuple[str, ...]) -> None:
        self._inner = inner
        self._limits = limits
        self._keys = keys

    async def _admit(self, tokens: int) -> None:
        for key in self._keys:
            if not await self._limits.try_acquire(key, tokens=tokens):
                raise provider_error("rate_limited", f"{key}: this executor's rpm/tpm limit", retryable=False)

    async def request(self, call: ProviderCall) -> Reply:
        await self._admit(expected_tokens(call))
        return await self._inner.request(call)

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        inner = embedder_of(self._inner, self._keys[0])
        await self._admit(expected_embedding_tokens(call))
        return await inner.embed(call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        await self._admit(expected_tokens(call))
        async for part in stream_any(self._inner, call):
            yield part
