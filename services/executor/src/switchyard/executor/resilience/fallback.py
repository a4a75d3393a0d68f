"""Fallback as a wrapper: try each target (a provider and the model to ask it for) in order.

A failure moves on to the next target unless its kind forbids it (see `providers/errors.py`). In a stream,
a failure before any output (text or reasoning) moves on too (and `on_switch` is told, so the client can
be told); a failure after output was sent is raised: the answer cannot be silently restarted elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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
from switchyard.executor.providers.errors import OPERATOR_FAILURES, should_fall_back
from switchyard.executor.providers.recording import embedder_of


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # how the caller knows it, e.g. the policy's "openai/gpt-4o-mini"
    provider: Provider
    model: str  # the name the provider knows the model by
    reasoning: bool = True  # the model takes the call's reasoning (RouteCandidate.reasoning)
    # the most output it is sent: a hard budget's cap fitted into what its context window leaves
    max_tokens: int | None = None

    def bind(self, call: ProviderCall) -> ProviderCall:
        """The call as this target is asked it: its model, no reasoning unless it takes it, and no more
        output than `max_tokens`."""
        asked = call.max_tokens
        fitted = asked if self.max_tokens is None or asked is None else min(asked, self.max_tokens)
        if self.reasoning or call.reasoning is None:
            return replace(call, model=self.model, max_tokens=fitted)
        return replace(call, model=self.model, reasoning=None, max_tokens=fitted)

    def bind_embedding(self, call: EmbeddingCall) -> EmbeddingCall:
        return replace(call, model=self.model)


OnSwitch = Callable[[Target, ProviderError], Awaitable[None]]
R = TypeVar("R")


class FallbackProvider:
    def __init__(self, targets: Sequence[Target], *, on_switch: OnSwitch | None = None) -> None:
        if not targets:
            raise ValueError("a fallback needs at least one target")
        self._targets = tuple(targets)
        self._on_switch = on_switch
        self.answered_by: Target | None = None
        self.errors: list[tuple[Target, ProviderError]] = []

    async def _next(self, index: int, error: ProviderError) -> None:
        """Records `error` from target `index`; re-raises when there is nowhere (or no right) to go."""
        self.errors.append((self._targets[index], error))
        if not should_fall_back(error):
            raise error
        if index + 1 >= len(self._targets):
            raise self._exhausted()
        if self._on_switch is not None:
            await self._on_switch(self._targets[index + 1], error)

    def _exhausted(self) -> ProviderError:
        last = self.errors[-1][1]
        summary = "; ".join(f"{t.name}: {e.kind}" for t, e in self.errors)
        # The last error's kind stands for the whole chain, since a caller needs one; the message names all.
        # Not a wrong key's or an account's out of credit (`auth`, `quota_exhausted`, which the gateway
        # answers `x-should-retry: false`) when an earlier candidate failed for a passing reason: the
        # caller's retry can reach that one again (a rate limit is passing even where the same model is
        # not retried at once: this executor's own rpm/tpm limit, `LimitGuard`).
        passing = [e for _, e in self.errors if e.retryable or e.kind in ("circuit_open", "rate_limited")]
        stands = passing[-1] if last.kind in OPERATOR_FAILURES and passing else last
        return ProviderError(
            f"every candidate failed ({summary}); last: {last.message}",
            kind=stands.kind,
            retryable=stands.retryable,
            retry_after=stands.retry_after,
        )

    async def _first(self, send: Callable[[Target], Awaitable[R]]) -> R:
        """The first target's answer that `send` gets without an error that stops the chain."""
        for index, target in enumerate(self._targets):
            try:
                reply = await send(target)
            except ProviderError as error:
                await self._next(index, error)
                continue
            self.answered_by = target
            return reply
        raise AssertionError("unreachable: the last target either answers or raises")

    async def request(self, call: ProviderCall) -> Reply:
        return await self._first(lambda target: target.provider.request(target.bind(call)))

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        """Embeddings from the first target that gives them (the router lists only models of the
        request's vector space)."""

        async def send(target: Target) -> EmbeddingReply:
            return await embedder_of(target.provider, target.name).embed(target.bind_embedding(call))

        return await self._first(send)

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        for index, target in enumerate(self._targets):
            sent_text = False
            try:
                async for part in stream_any(target.provider, target.bind(call)):
                    sent_text = sent_text or isinstance(part, OUTPUT)
                    if isinstance(part, Reply):
                        self.answered_by = target
                    yield part
            except ProviderError as error:
                if sent_text:
                    self.errors.append((target, error))
                    raise
                await self._next(index, error)
                continue
            return
