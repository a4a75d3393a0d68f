"""Admission of a task: rate limits and quotas first, then the budget reservation; and, when the task
ends, settlement of both to what it really used (or release, when it failed)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
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
        steps = []
        if self.ticket is not None:
            # an answer from the cache used no model tokens
            used = (0 if done.cache else done.usage.total_tokens) if done else None
            steps.append(self.ticket.finish(tokens_used=used))
        if self.reservation is not None:
            if done is None:
                steps.append(self.reservation.release())
            else:
                steps.append(self.reservation.settle(cost=pricing.actual_micro(self.policy, done)))
        # Independent counters (neither step raises): one round trip for all of them, not one per step.
        await asyncio.gather(*steps)


@dataclass
class Admission:
    policy: Policy
    limiter: RateLimiter | None
    budgets: Budgets | None
    default_max_tokens: int

    async def admit(self, principal: Principal, request: ChatRequest, *, providers: set[str]) -> Pass:
        """Takes the rate-limit counters and the budget reservation at once (one round trip to KV, not
        two); when either refuses, what the other took is given back, and the rate limit's refusal is
        the one raised (as when they ran in turn)."""
        admitted = Pass(self.policy)
        tokens = pricing.prompt_tokens(request) + pricing.output_tokens(
            request, default_max_tokens=self.default_max_tokens
        )
        steps: list[Awaitable[object]] = []
        if self.limiter is not None:
            steps.append(self.limiter.admit(principal, tokens=tokens))
        if self.budgets is not None:
            worst = pricing.worst_case_micro(
                self.policy, request, providers=providers, default_max_tokens=self.default_max_tokens
            )
            steps.append(self.budgets.reserve(principal, worst_case=worst))
        both = asyncio.gather(*steps, return_exceptions=True)
        try:
            results = await asyncio.shield(both)
        except asyncio.CancelledError:  # the request went away: give back what the steps take
            both.add_done_callback(lambda done: _give_back(self.policy, done))
            raise
        _hold(admitted, results)
        refusal = next((r for r in results if isinstance(r, BaseException)), None)
        if refusal is not None:
            await admitted.close()
            raise refusal
        return admitted


def _hold(admitted: Pass, results: list[object]) -> None:
    for result in results:
        if isinstance(result, Ticket):
            admitted.ticket = result
            admitted.headers.update(result.headers)
        elif isinstance(result, Reservation):
            admitted.reservation = result


_GIVING_BACK: set[asyncio.Task[None]] = set()


def _give_back(policy: Policy, done: asyncio.Future[list[object]]) -> None:
    if done.cancelled():
        return
    orphan = Pass(policy)
    _hold(orphan, done.result())
    task = asyncio.get_running_loop().create_task(orphan.close())
    _GIVING_BACK.add(task)
    task.add_done_callback(_GIVING_BACK.discard)
