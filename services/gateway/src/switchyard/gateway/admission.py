"""Admission of a task: rate limits and quotas first, then the budget reservation; and, when the task
ends, settlement of both to what it really used (or release, when it failed).

Every counter comes from a lease (`switchyard.common.leases`): taken in memory while this replica's
lease covers it, by compare-and-set in KV when not (all of a request's counters at once, one round
trip). Settlement gives back into the leases in memory; near a limit it is a KV write, which runs after
the response in a tracked task (`settle_soon`; `drain` awaits them at shutdown).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from switchyard.common.background import Background
from switchyard.common.events import ChatRequest, EmbeddingRequest, TaskBudget, TaskCompleted, TaskFailed
from switchyard.common.events.base import MAX_TOKENS
from switchyard.common.policy import Policy
from switchyard.common.policy_source import PolicySource
from switchyard.common.streaming import Chunk
from switchyard.common.wants import Want, give_all, take_local_all
from switchyard.gateway.budgets import pricing
from switchyard.gateway.budgets.service import Budgets, Reservation
from switchyard.gateway.limits.service import RateLimiter, Ticket, take_or_unavailable
from switchyard.gateway.tenants import Principal

if TYPE_CHECKING:
    from switchyard.gateway.inflight import InFlight

log = logging.getLogger(__name__)
T = TypeVar("T")
# The shortest answer a hard budget's remainder is spent on (`_Plan.afford`): below it, the request is
# refused as before (`budget_exceeded`).
MIN_CAPPED_ANSWER = 16


@dataclass
class Pass:
    """An admitted task. `observe` its items; `close` once it is over, whatever happened."""

    policy: Policy
    ticket: Ticket | None = None
    reservation: Reservation | None = None
    outcome: TaskCompleted | None = None
    failure: TaskFailed | None = None
    headers: dict[str, str] = field(default_factory=dict)
    budget: TaskBudget | None = None  # what a hard budget reserved: the task carries it (`TaskSubmitted`)
    closed: bool = False
    unlist: Callable[[], None] | None = None  # takes it off this replica's in-flight list (`inflight`)
    # a stream's chunks out of order: lost, or a redelivered run starting its answer again (`in_order`)
    gap: bool = False
    _next_seq: int = 0

    def observe(self, item: object) -> None:
        if isinstance(item, TaskCompleted):
            self.outcome = item
        elif isinstance(item, TaskFailed):
            self.failure = item
        elif isinstance(item, Chunk):
            self.gap = self.gap or item.seq != self._next_seq
            self._next_seq = item.seq + 1

    async def tap(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        try:
            async for item in items:
                self.observe(item)
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    def _backs(self) -> list[tuple[Want, int]]:
        if self.closed:
            return []
        self.closed = True
        if self.unlist is not None:
            self.unlist()  # before anything is given back: see `inflight`
        tokens, spend = unused(
            self.policy,
            charged(self.outcome or self.failure),
            tokens=0 if self.ticket is None else self.ticket.tokens_reserved,
            spend=0 if self.reservation is None else self.reservation.reserved,
        )
        backs: list[tuple[Want, int]] = []
        if self.ticket is not None:
            backs += self.ticket.give_backs(unused=tokens)
        if self.reservation is not None:
            backs += self.reservation.give_backs(unused=spend)
        return backs

    def close_local(self) -> list[tuple[Want, int]]:
        """Gives back what the leases take in memory; returns what must go to KV (near a limit)."""
        backs = self._backs()
        slow = [(w, a) for w, a in backs if a and not w.leases.give_local(w.key, a)]
        if backs and self.reservation is not None:
            self.reservation.budgets.spent_changed(self.reservation)
        return slow

    async def close(self) -> None:
        """Give back (or settle) what was admitted; once, however many paths end here. Never raises."""
        await self.give_back(self.close_local())

    async def give_back(self, slow: list[tuple[Want, int]]) -> None:
        """Gives `close_local`'s remainder back to KV (near a limit); never raises."""
        if slow:
            await give_all([w for w, _ in slow], [a for _, a in slow])
            if self.reservation is not None:
                self.reservation.budgets.spent_changed(self.reservation)


@dataclass
class _Plan:
    """A chat task's reservation under a hard budget: how many calls it covers (`pricing.covered_calls`)
    and each answer's output cap (`answer`), which the provider is sent (`TaskBudget`)."""

    policy: Policy
    request: ChatRequest | EmbeddingRequest
    providers: set[str]
    prompt: int
    default_max_tokens: int
    calls: int = 1
    answer: int = 0
    caps: dict[str, int] = field(default_factory=dict)  # cheaper candidates' longer caps (`afford`)

    def __post_init__(self) -> None:
        if isinstance(self.request, ChatRequest):
            self.answer = pricing.answer_tokens(self.request, default_max_tokens=self.default_max_tokens)

    def worst(self) -> int:
        return pricing.worst_case_micro(
            self.policy,
            self.request,
            providers=self.providers,
            default_max_tokens=self.default_max_tokens,
            prompt=self.prompt,
            answer=self.answer if isinstance(self.request, ChatRequest) else None,
            calls=self.calls,
        )

    def afford(self, left: int) -> bool:
        """Plans one call with the longest answer `left` micro-USD pays for (a race or a cascade is not
        worth a shorter answer), when that is at least MIN_CAPPED_ANSWER tokens (or all that was asked):
        a prompt paid for a few words is no answer. False: the refusal stands."""
        assert isinstance(self.request, ChatRequest)
        cap = pricing.affordable_answer(
            self.policy,
            self.request,
            providers=self.providers,
            prompt=self.prompt,
            left=left,
            most=self.answer,
        )
        if cap < min(self.answer, MIN_CAPPED_ANSWER):
            return False
        most, self.calls, self.answer = self.answer, 1, cap
        self.caps = pricing.model_caps(
            self.policy,
            self.request,
            providers=self.providers,
            prompt=self.prompt,
            reserved=self.worst(),
            cap=cap,
            most=min(most, MAX_TOKENS),
        )
        return True


def charged(ended: TaskCompleted | TaskFailed | None) -> TaskCompleted | TaskFailed | None:
    """The outcome billing charges a task for (its answer and the calls billed besides it; a failed task,
    the calls it cut or rejected: a cancelled stream's text so far), or None when it charges nothing."""
    return None if isinstance(ended, TaskFailed) and not ended.charged else ended


def unused(
    policy: Policy, ended: TaskCompleted | TaskFailed | None, *, tokens: int, spend: int
) -> tuple[int, int]:
    """What a task gives back of the `tokens` and the micro-USD (`spend`) it reserved, once it ended as
    `ended` (`charged`; None: everything). Negative: it used more than it reserved. A model with no price
    here keeps the money's worst case."""
    if ended is None:
        return tokens, spend
    used = sum(u.total_tokens for _, u in pricing.billed(ended))
    cost = pricing.actual_micro(policy, ended)
    return tokens - used, 0 if cost is None else spend - cost


@dataclass
class Admission:
    policy: Policy | PolicySource  # a source: the policy in force, re-read when its file changes
    limiter: RateLimiter | None
    budgets: Budgets | None
    default_max_tokens: int
    inflight: InFlight | None = None
    _settling: Background = field(default_factory=Background)
    _stopping: bool = False

    def current(self) -> Policy:
        """The policy in force."""
        return self.policy.current() if isinstance(self.policy, PolicySource) else self.policy

    async def admit(
        self,
        principal: Principal,
        request: ChatRequest | EmbeddingRequest,
        *,
        providers: set[str],
        task_id: str | None = None,
        timeout_s: float = 0.0,
        batch: bool = False,
    ) -> Pass:
        """Takes the rate-limit counters and the budget reservation at once (one round trip to KV at
        most, none when the leases cover them); when either refuses, what the other took is given back,
        and the rate limit's refusal is the one raised (as when they ran in turn). With a `task_id`, the
        admitted task is on this replica's in-flight list until it is settled (`inflight`), so that another
        replica settles it if this one dies; `timeout_s` is how long its result is waited for. An embedding
        request takes its inputs' tokens only, priced at the dearest model of its vector space. A `batch` line
        also takes one of its organisation's batch slots (`limits.models.checks`)."""
        policy = self.current()  # one policy for the whole request: its reservation and its settlement
        admitted = Pass(policy)
        prompt = pricing.prompt_tokens(request)  # once: its images and PDFs are read to count them
        output = pricing.output_tokens(request, default_max_tokens=self.default_max_tokens)
        tokens = pricing.admitted_prompt_tokens(policy, request, providers=providers, prompt=prompt) + output
        now = time.time()
        limited = (
            [] if self.limiter is None else self.limiter.wants(principal, tokens=tokens, now=now, batch=batch)
        )
        accounts = [] if self.budgets is None else self.budgets.accounts(principal)
        plan = _Plan(policy, request, providers, prompt, self.default_max_tokens)
        hard = isinstance(request, ChatRequest) and any(a.ceiling is not None for a in accounts)
        if hard:  # a hard budget: every call the task may be billed for is reserved, each answer capped
            strategies = policy.for_tenant(principal.tenant_id).strategies
            plan.calls = pricing.covered_calls(policy, request, strategies=strategies, providers=providers)
        worst = plan.worst()
        spend = [] if self.budgets is None else self.budgets.wants(accounts, worst_case=worst)
        results = await self._take([w for _, w in limited] + spend)
        n = len(limited)
        if hard and all(ok for ok, _ in results[:n]) and not all(ok for ok, _ in results[n:]):
            refused = zip(accounts, results[n:], strict=True)
            left = min((a.ceiling - used for a, (ok, used) in refused if not ok and a.ceiling), default=0)
            if plan.afford(left) and self.budgets is not None:  # a shorter answer fits what is left
                worst = plan.worst()
                spend = self.budgets.wants(accounts, worst_case=worst)
                results = await self._take([w for _, w in limited] + spend)
        if self.limiter is not None:
            admitted.ticket = self.limiter.ticket(limited, results[:n], tokens=tokens, now=now)
            admitted.headers.update(admitted.ticket.headers)
        if self.budgets is not None:
            admitted.reservation = self.budgets.reservation(
                principal, accounts, spend, results[n:], worst_case=worst
            )
        if hard:
            admitted.budget = TaskBudget(
                max_output_tokens=min(plan.answer, MAX_TOKENS), calls=plan.calls, model_caps=plan.caps
            )
        if self.inflight is not None and task_id is not None:
            self.inflight.add(
                admitted, task_id=task_id, tenant_id=principal.tenant_id, at=now, ends_by=now + timeout_s
            )
        return admitted

    async def settle_with(self, admitted: Pass, outcome: TaskCompleted | TaskFailed | None) -> None:
        """Settles `admitted` at `outcome` (None: released, as for a task that never ran). While this
        replica stops, a listed task whose outcome did not come is left listed instead: the replica's last
        write hands it over, and another settles it at its outcome (`inflight`)."""
        if outcome is None and self._stopping and admitted.unlist is not None and not admitted.closed:
            log.info("a task's outcome did not come before this replica stopped: handed over")
            return
        if outcome is not None:
            admitted.observe(outcome)
        await admitted.close()

    def stopping(self) -> None:
        """This replica is stopping (called before the last settlements are waited for)."""
        self._stopping = True

    def settle_soon(self, admitted: Pass) -> None:
        """Closes `admitted` now in memory, and in a tracked task for what needs KV (near a limit), so
        a response need not wait for it."""
        slow = admitted.close_local()
        if slow:
            self._track(admitted.give_back(slow))

    async def _take(self, wants: list[Want]) -> list[tuple[bool, int]]:
        """Takes `wants` all or nothing: from the leases in memory where they cover them, else from KV
        (one round trip); a refusal has given back what the others took."""
        partial = take_local_all(wants)
        results = [r for r in partial if r is not None]
        if len(results) == len(wants):
            return results
        taking = asyncio.ensure_future(take_or_unavailable(wants, partial))
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:  # the request went away: give back what the takes got
            taking.add_done_callback(functools.partial(self._give_back, wants))
            raise

    def _give_back(self, wants: list[Want], done: asyncio.Future[list[tuple[bool, int]]]) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # nothing was kept: take_all gives back on failure
        granted = [w for w, (ok, _) in zip(wants, done.result(), strict=True) if ok]
        if len(granted) == len(wants):  # a refusal was already given back by take_all
            self._track(give_all(granted))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        self._settling.spawn(work)

    async def drain(self) -> None:
        """Waits for every settlement still running (at shutdown, before the leases are handed back)."""
        await self._settling.drain()
