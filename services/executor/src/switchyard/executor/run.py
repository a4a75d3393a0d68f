"""One task's run as `execute` and `execute_embedding` share it (chat or embeddings): its deadline
(counted from the task's submission: resilience/budget.py), each candidate's chain of wrappers, and how
cut, cancelled, expired or failed calls end it. Moved out of execution.py, which passed 500 lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChargedCall, RouteCandidate, TaskFailed, TaskRouted
from switchyard.common.logs import redact
from switchyard.executor import budgeted
from switchyard.executor.callbook import CallBook
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.providers.base import Provider
from switchyard.executor.providers.recording import RecordingProvider
from switchyard.executor.providers.wrappers import CancelGuard, Unconfigured
from switchyard.executor.resilience.breaker import BreakerGuard, Breakers
from switchyard.executor.resilience.budget import Budget, budget, seconds
from switchyard.executor.resilience.deadline import Deadline
from switchyard.executor.resilience.fallback import Target
from switchyard.executor.resilience.limits import LimitGuard, RateLimits
from switchyard.executor.resilience.retry import RetryingProvider, RetryPolicy, Sleep

# The task deadline fires this much after the last call's own timeout would (a stream's: its bound until
# its first output), so calls time out (and are recorded) by themselves; the outer bound is for streams,
# whose reads are bounded one by one. Once a stream has sent output, the bound moves with it:
# `stream_idle_s` after its latest output, never past its cap.
DEADLINE_GRACE_S = 0.5
# The task's bound (from its submission) passed before an executor took it: not run (budget.py).
TASK_EXPIRED = "task_expired"
CANCELLED = "the task was cancelled (by its client, or its client went away) before it finished"
STOPPED = "the executor running this stream stopped (a restart) after its output began; send it again"
R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    call_timeout_s: float = 60.0
    task_deadline_s: float = 110.0  # until the first output (a task answered whole: until its answer)
    stream_idle_s: float = 120.0  # a streamed answer's silence between two outputs
    stream_max_s: float = 3600.0  # a streamed answer's whole run, the safety net
    client_retry_after_max_s: float = 300.0  # the longest wait a failure passes on (`client_wait`)


def breaker_key(candidate: RouteCandidate) -> str:
    return f"{candidate.provider}/{candidate.upstream_model}"


@dataclass
class Run:
    """What a task's run shares however it is asked (chat or embeddings): its calls' records, its
    deadline, each candidate's chain of wrappers, and how cut, cancelled or failed calls end it."""

    routed: TaskRouted
    providers: Mapping[str, Provider]
    breakers: Breakers
    policy: ExecutionPolicy
    book: CallBook
    limits: RateLimits | None
    sleep: Sleep
    cancelled: Callable[[], bool] | None
    interruptible: Callable[[], contextlib.AbstractContextManager[object]]
    on_cut: Callable[[list[ChargedCall]], Awaitable[None]] | None
    started: float = field(default_factory=time.perf_counter)
    deadline: Deadline = field(init=False)
    cap: Deadline = field(init=False)  # a stream's whole run
    timer: asyncio.Timeout | None = None
    produced: bool = False  # a stream has sent output
    budget_s: float = field(init=False)  # until the answer (a stream: its first output)
    budget: Budget = field(init=False)  # what is left of it, counted from the task's submission
    call_timeout_s: float = field(init=False)  # one call (a stream: each read), before the deadline's clamp
    idle_s: float = field(init=False)  # a stream's silence between two outputs, once output came

    def __post_init__(self) -> None:
        task, policy = self.routed.task, self.policy
        # A task whose submitter says how long it may run (its client's own timeout: a reasoning model's
        # answer may take minutes) gets that, within the stream cap. Longer than this executor's own
        # deadline, it asks for a long answer: one call may take all of it. No longer, it keeps the
        # per-call limit, and so its fallbacks (a deployment that prefers them lowers the gateway's
        # SWITCHYARD_REQUEST_TIMEOUT_MAX_S to its default wait). Its bounds count from its submission
        # (budget.py): what it waited on the bus is spent of them.
        asked = task.timeout_s
        self.budget_s = policy.task_deadline_s if asked is None else min(asked, policy.stream_max_s)
        long = self.budget_s > policy.task_deadline_s  # with none asked, it is the executor's own
        self.call_timeout_s = max(policy.call_timeout_s, self.budget_s) if long else policy.call_timeout_s
        # Its wait is its SDK's read timeout, which bounds each read of a stream, not only the first: a
        # reasoning model silent for minutes between a text part and a tool call (OpenAI sends nothing while
        # it reasons) is not cut sooner than the client, calling the provider itself, would cut it.
        self.idle_s = policy.stream_idle_s if asked is None else max(policy.stream_idle_s, self.budget_s)
        self.budget = budget(
            own_s=policy.task_deadline_s,
            asked_s=None if asked is None else self.budget_s,
            stream_max_s=policy.stream_max_s,
            deadline=task.deadline,
            submitted_at=task.submitted_at,
            counts_from_submission=task.timeout_from != "started"
            and (asked is not None or task.origin != "bus"),
            now=datetime.now(UTC),
        )
        self.deadline = Deadline.within(self.budget.left_s, tightened=self.budget.tightened)
        self.cap = Deadline.within(self.budget.cap_s)

    def was_cancelled(self) -> bool:
        return self.cancelled is not None and self.cancelled()

    def target(self, candidate: RouteCandidate) -> Target:
        adapter = self.providers.get(candidate.provider)
        if adapter is None:
            unconfigured = Unconfigured(candidate.provider)
            return Target(candidate.model, unconfigured, candidate.upstream_model, candidate.reasoning)
        recorded: Provider = RecordingProvider(
            adapter, provider=candidate.provider, model=candidate.model, on_call=self.book.on_call
        )
        if self.cancelled is not None:  # checked again after the breaker's and limits' KV round trips
            recorded = CancelGuard(recorded, self.cancelled)
        guarded: Provider = BreakerGuard(
            recorded, self.breakers, key=breaker_key(candidate), probe_s=self.policy.call_timeout_s
        )
        # outside the breaker: our own limit says nothing about the provider's health
        if self.limits is not None:
            guarded = LimitGuard(
                guarded,
                self.limits,
                keys=(candidate.provider, candidate.model),
                cache_reads=getattr(adapter, "limits_count_cache_reads", True),
            )
        budget = self.routed.task.budget
        if budget is not None:  # each attempt within its model's cap, less what the billed calls took
            carried = self.book.charged[: self.book.carried]
            # one call covered: a retry's or a fallback's own calls billed besides the answer count too
            charged = (lambda: self.book.charged) if budget.calls == 1 else (lambda: carried)
            guarded = budgeted.Spending(guarded, self.routed, candidate.model, charged)
        return Target(
            candidate.model,
            RetryingProvider(
                guarded,
                self.policy.retry,
                deadline=self.deadline,
                sleep=self.sleep,
                own_call_s=self.policy.call_timeout_s,
            ),
            candidate.upstream_model,
            candidate.reasoning,
        )

    async def expired(self, chunks: ChunkSink | None) -> TaskFailed:
        """The task's bound passed before it started (it waited on the bus): it ends unrun, no provider
        called, nothing billed but what earlier runs of it were (`carried`)."""
        why = self.budget.why_expired()
        log.info("task %s: %s", self.routed.task.task_id, why)
        return await failed(self.routed, chunks, code=TASK_EXPIRED, message=why, book=self.book)

    def within_deadline(self) -> contextlib.AbstractAsyncContextManager[object]:
        self.timer = asyncio.timeout(self.deadline.remaining() + DEADLINE_GRACE_S)
        return self.timer

    def output(self) -> None:
        """A stream sent output: it may now run `idle_s` past it, within its cap, whatever the deadline of
        its first output said. The idle limit itself cuts the provider's call (`recording.py`: its
        `timeout`, charged to its health); this bound, a little later, is the net."""
        self.produced = True
        if self.timer is not None:
            left = min(self.idle_s + DEADLINE_GRACE_S, self.cap.remaining())
            self.timer.reschedule(asyncio.get_running_loop().time() + left)

    def timed_out(self) -> str:
        """Which bound cut the task."""
        if not self.produced:
            waited = self.budget.waited_s
            spent = f", of which it waited {waited:.1f} s for an executor" if waited >= 0.1 else ""
            return f"the task did not finish within its deadline ({seconds(self.budget.bound_s)} s{spent})"
        if self.cap.expired():
            return f"the stream did not finish within its cap ({self.policy.stream_max_s:g} s)"
        return f"the stream sent nothing for {seconds(self.idle_s)} s (its idle limit)"

    async def calls(
        self, work: Callable[[], Awaitable[R]], chunks: ChunkSink | None = None
    ) -> R | TaskFailed:
        """What `work` (the task's provider calls) gives, or the failure that ended it."""
        book, routed = self.book, self.routed
        try:
            # Left (synchronously, before any handler below runs) however the calls end: a cancellation
            # heard after that finds nothing to interrupt, and the task ends as its calls did.
            with self.interruptible():
                return await work()
        except ProviderError as error:
            await book.settle(None)
            wait, said = client_wait(error.retry_after, self.policy.client_retry_after_max_s)
            return await failed(
                routed,
                chunks,
                code=error.code,
                message=error.message + said,
                book=book,
                retry_after=wait,
            )
        except TimeoutError:
            await book.settle(None)
            return await failed(routed, chunks, code="provider_timeout", message=self.timed_out(), book=book)
        except asyncio.CancelledError:
            if not self.was_cancelled() and not self.produced:
                # A shutdown: the task is redelivered. An answer held for a strategy's verdict is billed
                # (this run delivers none), and what this run was billed for goes to the run that redoes it.
                await book.settle(None)
                if self.on_cut is not None and book.charged:
                    await self.on_cut(book.charged)
                raise
            # The client's cancellation (a shutdown at the same moment would end the task the same way), or
            # a shutdown cutting a stream its client is reading: a redo would start the answer again from
            # its first word, which its gateway cannot splice onto what it sent, and pay for it again.
            code, message = (
                ("task_cancelled", CANCELLED) if self.was_cancelled() else ("executor_stopping", STOPPED)
            )
            current = asyncio.current_task()
            while current is not None and current.uncancel() > 0:
                pass
            # The calls in flight were cut and recorded as cancelled (billable, usage estimated); answers
            # held for a strategy's verdict are billable too, since none is delivered.
            await book.settle(None)
            return await failed(routed, chunks, code=code, message=message, book=book)

    def answered(self, candidate: RouteCandidate) -> dict[str, Any]:
        """The fields of the task's TaskCompleted that are not the answer itself."""
        task, book = self.routed.task, self.book
        return {
            "task_id": task.task_id,
            "tenant_id": task.tenant_id,
            "user_id": task.user_id,
            "api_key_id": task.api_key_id,
            "model": candidate.model,
            "provider": candidate.provider,
            "tier": candidate.tier,
            "attempts": book.attempts,
            "latency_ms": round((time.perf_counter() - self.started) * 1000.0, 3),
            "provider_ms": book.provider_ms(),
            "completed_at": datetime.now(UTC),
            "charged": book.charged,
        }


RETRY_AFTER_SETTING = "SWITCHYARD_RETRY_AFTER_CLIENT_MAX_S"


def client_wait(asked_s: float | None, max_s: float) -> tuple[float | None, str]:
    """The wait a failure passes on to its client (the gateway's Retry-After, the task.failed event's
    `retry_after_s`), and what to add to its message: a provider's Retry-After (or rate-limit reset) as
    given, up to `max_s`. A provider saying `Retry-After: 86400` would have its clients wait a day for a
    router that may send them elsewhere in a minute (and the executor does not wait for it either:
    `RetryPolicy.max_retry_after_s`)."""
    if asked_s is None or asked_s <= max_s:
        return asked_s, ""
    return max_s, f" (the provider asked to wait {asked_s:g} s; capped at {max_s:g} s: {RETRY_AFTER_SETTING})"


async def failed(
    routed: TaskRouted,
    chunks: ChunkSink | None,
    *,
    code: str,
    message: str,
    book: CallBook | None = None,
    retry_after: float | None = None,
) -> TaskFailed:
    """A stream that already showed text ends with an explicit error chunk, never a silent truncation."""
    if chunks is not None and chunks.text_sent:
        await chunks.error(code=code, message=redact(message))
    task = routed.task
    return TaskFailed(
        task_id=task.task_id,
        tenant_id=task.tenant_id,
        user_id=task.user_id,
        error_code=code,
        error_message=redact(message),
        attempts=0 if book is None else book.attempts,
        failed_at=datetime.now(UTC),
        charged=[] if book is None else book.charged,
        retry_after_s=retry_after,
    )
