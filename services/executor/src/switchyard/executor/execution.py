"""Running one routed task: walk its candidate chain with retries, breakers and a deadline, stream if
asked, and say how it ended. A plain domain function: the bus handler (app.py) publishes what it returns
and what it reports. An embedding task (`execute_embedding`) walks its chain the same way, one model
after another (the router lists only models of one vector space), and ends with its vectors kept (in the
result, or in the object store when large)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from switchyard.common import vectors
from switchyard.common.errors import ProviderError
from switchyard.common.events import ChargedCall, RouteCandidate, TaskCompleted, TaskFailed, TaskRouted
from switchyard.executor import budgeted, logprobs, metrics, strategies, tool_state
from switchyard.executor.callbook import CallBook, Report
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.embedding_replies import Checked
from switchyard.executor.providers.base import (
    OUTPUT,
    AnswerEnd,
    EmbeddingCall,
    EmbeddingReply,
    PromptCounted,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    cache_key_for,
    reply_parts,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.quality import Context
from switchyard.executor.resilience.breaker import Breakers
from switchyard.executor.resilience.fallback import FallbackProvider, Target
from switchyard.executor.resilience.limits import RateLimits
from switchyard.executor.resilience.retry import Sleep
from switchyard.executor.run import CANCELLED, TASK_EXPIRED, ExecutionPolicy, Run, breaker_key, failed

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
log = logging.getLogger(__name__)


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
    run = Run(routed, providers, breakers, policy, book, limits, sleep, cancelled, interruptible, on_cut)
    if run.was_cancelled():
        return await failed(routed, chunks, code="task_cancelled", message=CANCELLED, book=book)
    if run.budget.expired:
        return await run.expired(chunks)
    if (reason := budgeted.spent(routed, carried)) is not None:
        return await failed(routed, chunks, code="budget_exceeded", message=reason, book=book)
    target = budgeted.fitted(run.target, routed)
    candidates = decision.candidates
    # Only where a candidate's adapter uses what was kept: no look-up for a chain of Claude models
    carries = any(getattr(providers.get(c.provider), "carries", False) for c in decision.candidates)
    request = task.chat()
    context = Context(request, routed.classification, decision.min_confidence)
    # Several answers (`n`) come from one call and stream interleaved, each chunk under its answer's index.
    streamed = chunks is not None and (decision.strategy == "single" or len(candidates) == 1)
    budget = task.budget  # a hard budget's reservation covers this many billed calls, each this long
    covered = decision.fan_out if budget is None else min(decision.fan_out, budget.calls)

    async def work() -> strategies.Result:
        call = replace(
            ProviderCall.from_request(request, model="", cap=budgeted.cap(routed, carried)),
            timeout_s=run.call_timeout_s,
            headers_s=policy.call_timeout_s,
            idle_s=run.idle_s,
            carried=await tool_state.carried(states if carries else None, task.tenant_id, request.messages),
            cache_key=cache_key_for(task.tenant_id, request.prompt_cache_key),
        )
        async with run.within_deadline():
            if streamed:
                assert chunks is not None
                chunks.estimated(decision.estimated_prompt_tokens)
                return await _stream(candidates, target, call, chunks, on_output=run.output)
            if decision.strategy == "cascade":
                return await strategies.cascade(
                    candidates,
                    target,
                    call,
                    context=context,
                    checks=decision.checks,
                    answers=None if budget is None else budget.calls,
                )
            if decision.strategy == "parallel" and covered > 1:
                return await strategies.parallel(
                    candidates,
                    target,
                    call,
                    fan_out=covered,
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
    run = Run(routed, providers, breakers, policy, book, limits, sleep, cancelled, interruptible, on_cut)
    if run.was_cancelled():
        return await failed(routed, None, code="task_cancelled", message=CANCELLED, book=book)
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
        return await failed(routed, None, code=EMBEDDING_TOO_LARGE, message=message, book=book)
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
        return await failed(routed, None, code=EMBEDDING_UNAVAILABLE, message=message, book=book)
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
    await chunks.start(candidates[0].model)  # a switch to another candidate names that one instead
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
    elif isinstance(part, PromptCounted):
        chunks.counted(part.usage)
    elif isinstance(part, AnswerEnd):
        await chunks.answer_end(
            choice=part.choice,
            finish_reason=part.finish_reason,
            tool_calls=part.tool_calls,
            refusal=part.refusal,
        )
