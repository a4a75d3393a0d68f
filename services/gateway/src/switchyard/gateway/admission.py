"""Admission of a task: rate limits and quotas first, then the budget reservation; and, when the task
ends, settlement of both to what it really used (or release, when it failed)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

from switchyard.common.events import ChatRequest, TaskCompleted
from switchyard.common.policy import Policy
from switchyard.gateway.budgets import pricing
from switchyard.gateway.budgets.service import Budgets, Reservation
from switchyard.gateway.limits.service import RateLimiter, Ticket
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Pass:
    """An admitted task. `observe` its items; `close` once it is over, whatever happened."""

    policy: Policy
    ticket: Ticket | None = None
    reservation: Reservation | None = None
    outcome: TaskCompleted | None = None
    headers: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    def observe(self, item: object) -> None:
        if isinstance(item, TaskCompleted):
            self.outcome = item

    async def tap(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        try:
            async for item in items:
                self.observe(item)
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Give back (or settle) what was admitted; once, however many paths end here."""
        if self.closed:
            return
        self.closed = True
        done = self.outcome
        if self.ticket is not None:
            # an answer from the cache used no model tokens
            used = (0 if done.cache else done.usage.total_tokens) if done else None
            await self.ticket.finish(tokens_used=used)
        if self.reservation is not None:
            if done is None:
                await self.reservation.release()
            else:
                await self.reservation.settle(cost=pricing.actual_micro(self.policy, done))


@dataclass
class Admission:
    policy: Policy
    limiter: RateLimiter | None
    budgets: Budgets | None
    default_max_tokens: int

    async def admit(self, principal: Principal, request: ChatRequest, *, providers: set[str]) -> Pass:
        admitted = Pass(self.policy)
        tokens = pricing.prompt_tokens(request) + pricing.output_tokens(
            request, default_max_tokens=self.default_max_tokens
        )
        if self.limiter is not None:
            admitted.ticket = await self.limiter.admit(principal, tokens=tokens)
            admitted.headers.update(admitted.ticket.headers)
        if self.budgets is not None:
            worst = pricing.worst_case_micro(
                self.policy, request, providers=providers, default_max_tokens=self.default_max_tokens
            )
            try:
                admitted.reservation = await self.budgets.reserve(principal, worst_case=worst)
            except BaseException:
                await admitted.close()
                raise
        return admitted
