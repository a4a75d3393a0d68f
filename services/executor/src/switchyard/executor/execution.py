"""Running one routed task: walk its candidate chain with retries, breakers and a deadline, stream if
asked, and say how it ended. A plain domain function: the bus handler (app.py) publishes what it returns
and what it reports. An embedding task (`execute_embedding`) walks its chain the same way, one model
after another (the router lists only models of one vector space), and ends with its vectors kept (in the
result, or in the object store when large)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from switchyard.common import vectors
from switchyard.common.errors import ProviderError
from switchyard.common.events import ChargedCall, RouteCandidate, TaskCompleted, TaskFailed, TaskRouted
from switchyard.common.logs import redact
from switchyard.executor import logprobs, metrics, strategies, tool_state
from switchyard.executor.callbook import CallBook, Report
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.embedding_replies import Checked
from switchyard.executor.providers.base import (
    OUTPUT,
    AnswerEnd,
    EmbeddingCall,
    EmbeddingReply,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    reply_parts,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import RecordingProvider
from switchyard.executor.providers.wrappers import CancelGuard, Unconfigured
from switchyard.executor.quality import Context
from switchyard.executor.resilience.breaker import BreakerGuard, Breakers
from switchyard.executor.resilience.budget import Budget, budget, seconds
from switchyard.executor.resilience.deadline import Deadline
from switchyard.executor.resilience.fallback import FallbackProvider, Target
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
# The vectors are more than one result may hold (vectors.MAX_RESULT_BYTES).
EMBEDDING_TOO_LARGE = "embedding_result_too_large"
# The vectors could not be kept for delivery (the object store is full, or the bus failed).
EMBEDDING_UNAVAILABLE = "embedding_result_unavailable"

__all__ = [
    "TASK_EXPIRED",
    "ExecutionPolicy",
    "Outcome",
    "Report",
    "breaker_key",
    "execute",
    "execute_embedding",
]
Outcome = TaskCompleted | TaskFailed
R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    call_timeout_s: float = 60.0
    task_deadline_s: float = 110.0  # until the first output (a task answered whole: until its answer)
    stream_idle_s: float = 120.0  # a streamed answer's silence between two outputs
    stream_max_s: float = 3600.0  # a streamed answer's whole run, the safety net


def breaker_key(candidate: RouteCandidate) -> str:
    return f"{candidate.provider}/{candidate.upstream_model}"


@dataclass
class _Run:
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
        long = asked is not None and self.budget_s > policy.task_deadline_s
        self.call_timeout_s = max(policy.call_timeout_s, self.budget_s) if long else policy.call_timeout_s
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
        return await _failed(self.routed, chunks, code=TASK_EXPIRED, message=why, book=self.book)

    def within_deadline(self) -> contextlib.AbstractAsyncContextManager[object]:
        self.timer = asyncio.timeout(self.deadline.remaining() + DEADLINE_GRACE_S)
        return self.timer

    def output(self) -> None:
        """A stream sent output: it may now run `stream_idle_s` past it, within its cap, whatever the
        deadline of its first output said."""
        self.produced = True
        if self.timer is not None:
            left = min(self.policy.stream_idle_s, self.cap.remaining())
            self.timer.reschedule(asyncio.get_running_loop().time() + left)

    def timed_out(self) -> str:
        """Which bound cut the task."""
        if not self.produced:
            waited = self.budget.waited_s
            spent = f", of which it waited {waited:.1f} s for an executor" if waited >= 0.1 else ""
            return f"the task did not finish within its deadline ({seconds(self.budget.bound_s)} s{spent})"
        if self.cap.expired():
            return f"the stream did not finish within its cap ({self.policy.stream_max_s:g} s)"
        return f"the stream sent nothing for {self.policy.stream_idle_s:g} s (its idle limit)"

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
            return await _failed(
                routed,
                chunks,
                code=error.code,
                message=error.message,
                book=book,
                retry_after=error.retry_after,
            )
        except TimeoutError:
            await book.settle(None)
            return await _failed(routed, chunks, code="provider_timeout", message=self.timed_out(), book=book)
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
            return await _failed(routed, chunks, code=code, message=message, book=book)

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


async def execute(
    routed: TaskRouted,
    *,
    providers: Mapping[str, Provider],
    breakers: Breakers,
    policy: ExecutionPolicy,
    report: Report,
    chunks: ChunkSink | None = None,
    limits: RateLimits | None = None,
    sleep: Sleep = asyncio.sleep,
    cancelled: Callable[[], bool] | None = None,
    interruptible: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    states: tool_state.ToolStates | None = None,
    carried: Sequence[ChargedCall] = (),
    on_cut: Callable[[list[ChargedCall]], Awaitable[None]] | None = None,
) -> Outcome:
    """Runs the task. `cancelled` says whether its client cancelled it: checked before it starts, before
    each provider call (CancelGuard), and when this coroutine's task is cancelled (the executor cancels it
    for a cancellation; any other cancellation, a shutdown, goes on up). Only inside `interruptible()`
    may a client's cancellation cancel this coroutine's task: around the provider calls, not while their
    records are settled and the outcome built, where a cancellation would escape as a shutdown (the task
    unacked until redelivered, the calls already made never reported). `states` keeps what providers
    return beside tool calls for the conversation's next turn (tool_state.py). `carried`: what earlier
    runs of the task, cut by their executor's stop, were billed for; a run cut so hands `on_cut` all it
    was billed for, theirs included (carried.py)."""
    task = routed.task
    decision = routed.decision
    book = CallBook(routed, report, carried=carried)
    run = _Run(routed, providers, breakers, policy, book, limits, sleep, cancelled, interruptible, on_cut)
    if run.was_cancelled():
        return await _failed(routed, chunks, code="task_cancelled", message=CANCELLED, book=book)
    if run.budget.expired:
        return await run.expired(chunks)
    target = run.target
    candidates = decision.candidates
    # Only where a candidate's adapter uses what was kept: no look-up for a chain of Claude models
    carries = any(getattr(providers.get(c.provider), "carries", False) for c in decision.candidates)
    request = task.chat()
    context = Context(request, routed.classification, decision.min_confidence)
    # Several answers (`n`) come from one call and stream interleaved, each chunk under its answer's index.
    streamed = chunks is not None and (decision.strategy == "single" or len(candidates) == 1)

    async def work() -> strategies.Result:
        call = replace(
            ProviderCall.from_request(request, model=""),
            timeout_s=run.call_timeout_s,
            headers_s=policy.call_timeout_s,
            carried=await tool_state.carried(states if carries else None, task.tenant_id, request.messages),
        )
        async with run.within_deadline():
            if streamed:
                assert chunks is not None
                return await _stream(candidates, target, call, chunks, on_output=run.output)
            if decision.strategy == "cascade":
                return await strategies.cascade(
                    candidates, target, call, context=context, checks=decision.checks
                )
            if decision.strategy == "parallel" and decision.fan_out > 1:
                return await strategies.parallel(
                    candidates,
                    target,
                    call,
                    fan_out=decision.fan_out,
                    mode=decision.parallel_mode,
                    context=context,
                    checks=decision.checks,
                )
            return await strategies.single(candidates, target, call)

    result = await run.calls(work, chunks)
    if isinstance(result, TaskFailed):
        return result
    await book.settle(result.candidate.model)
    await tool_state.keep(states, task.tenant_id, result.reply.carry)
    metrics.observe_strategy(decision.strategy, result.escalations, book.spent, result.candidate.model)
    reply, candidate = result.reply, result.candidate
    tokens = logprobs.kept(reply.logprobs, reply.other_choices, asked=request.logprobs)
    if chunks is not None:
        if not streamed:  # a cascade or a race: judged, then sent whole
            chunks.announce(candidate.model)
            # the tokens the result carries: all of them could outgrow a message as they outgrow a result
            whole = replace(
                reply,
                logprobs=None if tokens.first is None else tuple(tokens.first),
                other_choices=tuple(tokens.others),
            )
            for part in reply_parts(whole):
                await _send(chunks, part, logprobs=request.logprobs)
        await chunks.done(finish_reason=reply.finish_reason)
    return TaskCompleted(
        **run.answered(candidate),
        usage=reply.usage,
        usage_estimated=reply.usage_estimated,
        content=reply.content,
        finish_reason=reply.finish_reason,
        stop_sequence=reply.stop_sequence,
        tool_calls=list(reply.tool_calls) or None,
        thinking=list(reply.thinking) or None,
        refusal=reply.refusal,
        other_choices=tokens.others,
        logprobs=tokens.first,
        logprobs_truncated=tokens.truncated,
    )


async def execute_embedding(
    routed: TaskRouted,
    *,
    providers: Mapping[str, Provider],
    breakers: Breakers,
    policy: ExecutionPolicy,
    report: Report,
    limits: RateLimits | None = None,
    sleep: Sleep = asyncio.sleep,
    cancelled: Callable[[], bool] | None = None,
    interruptible: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    carried: Sequence[ChargedCall] = (),
    on_cut: Callable[[list[ChargedCall]], Awaitable[None]] | None = None,
    keep: vectors.Keep = vectors.inline,
) -> Outcome:
    """Runs an embedding task (the arguments as `execute`'s): its candidates one after another, each
    with its retries and breaker (the router lists only models of the request's vector space, so any of
    them will do). Each reply is checked (`embedding_replies.fault`); a wrong one is `bad_response`,
    billed and passed over for the next candidate. `keep` makes the result of the vectors (`vectors.keep`:
    inline when small, else in the object store, under a name of the tenant and task; a batch line's in the
    batches' store). A reply larger than a result may hold fails the task `embedding_result_too_large`,
    vectors that could not be kept `embedding_result_unavailable`; either way the call is billed."""
    request = routed.task.embedding()
    if request is None:
        raise TypeError(f"task {routed.task.task_id} is a chat task, not an embedding task")
    book = CallBook(routed, report, carried=carried)
    run = _Run(routed, providers, breakers, policy, book, limits, sleep, cancelled, interruptible, on_cut)
    if run.was_cancelled():
        return await _failed(routed, None, code="task_cancelled", message=CANCELLED, book=book)
    if run.budget.expired:
        return await run.expired(None)
    candidates = routed.decision.candidates
    call = EmbeddingCall(
        model="", inputs=tuple(request.input), dimensions=request.dimensions, timeout_s=run.call_timeout_s
    )

    def target(candidate: RouteCandidate) -> Target:
        plain = run.target(candidate)
        return replace(plain, provider=Checked(plain.provider, candidate, count=len(request.input)))

    async def work() -> tuple[RouteCandidate, EmbeddingReply]:
        chain = FallbackProvider([target(c) for c in candidates])
        async with run.within_deadline():
            reply = await chain.embed(call)
        assert chain.answered_by is not None
        return next(c for c in candidates if c.model == chain.answered_by.name), reply

    result = await run.calls(work)
    if isinstance(result, TaskFailed):
        return result
    candidate, reply = result
    if not vectors.fits(reply.count, reply.dimensions):
        await book.settle(None)  # answered, and paid for, but not delivered
        message = (
            f"{reply.count} vectors of {reply.dimensions} numbers are more than one result holds "
            f"({vectors.MAX_RESULT_BYTES // (1024 * 1024)} MiB): send at most "
            f"{vectors.most_inputs(reply.dimensions)} inputs of this length per request"
        )
        return await _failed(routed, None, code=EMBEDDING_TOO_LARGE, message=message, book=book)
    task = routed.task
    try:
        kept = await keep(
            reply.vectors,
            count=reply.count,
            dimensions=reply.dimensions,
            name=vectors.object_name(task.tenant_id, task.task_id),
            batch=bool(task.batch),
        )
    except vectors.VectorsNotKept as exc:
        log.warning("task %s: %s", task.task_id, exc)
        await book.settle(None)  # answered, and paid for, but not delivered
        message = f"the vectors could not be kept for delivery: {exc}"
        return await _failed(routed, None, code=EMBEDDING_UNAVAILABLE, message=message, book=book)
    await book.settle(candidate.model)
    metrics.observe_strategy("single", [], book.spent, candidate.model)
    return TaskCompleted(
        **run.answered(candidate),
        usage=reply.usage,
        usage_estimated=reply.usage_estimated,
        content="",
        finish_reason="stop",
        embedding=kept,
    )


async def _stream(
    candidates: Sequence[RouteCandidate],
    target: Callable[[RouteCandidate], Target],
    call: ProviderCall,
    chunks: ChunkSink,
    *,
    on_output: Callable[[], None],
) -> strategies.Result:
    async def on_switch(next_target: Target, _error: ProviderError) -> None:
        await chunks.reset(model=next_target.name)

    chain = FallbackProvider([target(c) for c in candidates], on_switch=on_switch)
    chunks.announce(candidates[0].model)  # a switch to another candidate names that one instead
    async for part in chain.stream(call):
        if not isinstance(part, Reply):
            await _send(chunks, part, logprobs=call.logprobs)
            if isinstance(part, OUTPUT):
                on_output()
        else:
            assert chain.answered_by is not None
            answered = next(c for c in candidates if c.model == chain.answered_by.name)
            return strategies.Result(answered, part)
    raise provider_error("bad_response", "the stream ended without a final reply")


async def _send(chunks: ChunkSink, part: StreamPart, *, logprobs: bool) -> None:
    """`logprobs`: the call asked for its tokens (a chunk carries none otherwise)."""
    if isinstance(part, TextDelta):
        await chunks.delta(part.text, part.logprobs if logprobs else (), part.choice)
    elif isinstance(part, ThinkingDelta):
        await chunks.thinking(
            text=part.text, signature=part.signature, redacted=part.redacted, choice=part.choice
        )
    elif isinstance(part, ToolCallDelta):
        await chunks.tool_call(part)
    elif isinstance(part, AnswerEnd):
        await chunks.answer_end(
            choice=part.choice,
            finish_reason=part.finish_reason,
            tool_calls=part.tool_calls,
            refusal=part.refusal,
        )


async def _failed(
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
        await chunks.error(code=code, message=message)
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
