"""Running one routed task: walk its candidate chain with retries, breakers and a deadline, stream if
asked, and say how it ended. A plain domain function: the bus handler (app.py) publishes what it returns
and what it reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ProviderCallRecorded,
    RouteCandidate,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    Usage,
)
from switchyard.common.logs import redact
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.providers.base import Provider, ProviderCall, Reply, TextDelta
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import CallRecord, RecordingProvider
from switchyard.executor.resilience.breaker import BreakerGuard, Breakers
from switchyard.executor.resilience.deadline import Deadline
from switchyard.executor.resilience.fallback import FallbackProvider, Target
from switchyard.executor.resilience.limits import LimitGuard, RateLimits
from switchyard.executor.resilience.retry import RetryingProvider, RetryPolicy, Sleep

# The task deadline fires this much after the last call's own timeout would, so calls time out (and are
# recorded) by themselves; the outer bound is for streams, whose timeout is per chunk.
DEADLINE_GRACE_S = 0.5

Report = Callable[[int, ProviderCallRecorded], Awaitable[None]]
Outcome = TaskCompleted | TaskFailed


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    call_timeout_s: float = 60.0
    task_deadline_s: float = 110.0


class Unconfigured:
    """Stands in for a provider this executor holds no credentials for: fails without calling anyone."""

    def __init__(self, name: str) -> None:
        self._name = name

    async def request(self, call: ProviderCall) -> Reply:
        raise provider_error("auth", f"provider {self._name!r} is not configured on this executor")


def breaker_key(candidate: RouteCandidate) -> str:
    return f"{candidate.provider}/{candidate.upstream_model}"


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
) -> Outcome:
    task = routed.task
    started = time.perf_counter()
    deadline = Deadline.for_task(
        budget_s=policy.task_deadline_s, task_deadline=task.deadline, now=datetime.now(UTC)
    )
    attempts = 0

    async def on_call(record: CallRecord) -> None:
        nonlocal attempts
        attempts += 1
        await report(attempts, _call_event(routed, attempts, record))

    def target(candidate: RouteCandidate) -> Target:
        adapter = providers.get(candidate.provider)
        if adapter is None:
            return Target(candidate.model, Unconfigured(candidate.provider), candidate.upstream_model)
        recorded = RecordingProvider(
            adapter, provider=candidate.provider, model=candidate.model, on_call=on_call
        )
        guarded: Provider = BreakerGuard(recorded, breakers, key=breaker_key(candidate))
        if limits is not None:  # outside the breaker: our own limit says nothing about the provider's health
            guarded = LimitGuard(guarded, limits, key=candidate.provider)
        return Target(
            candidate.model,
            RetryingProvider(guarded, policy.retry, deadline=deadline, sleep=sleep),
            candidate.upstream_model,
        )

    async def on_switch(next_target: Target, _error: ProviderError) -> None:
        if chunks is not None:
            await chunks.reset(model=next_target.name)

    candidates = routed.decision.candidates
    chain = FallbackProvider([target(c) for c in candidates], on_switch=on_switch)
    call = replace(ProviderCall.from_request(task.request, model=""), timeout_s=policy.call_timeout_s)
    try:
        async with asyncio.timeout(deadline.remaining() + DEADLINE_GRACE_S):
            reply = await (_stream(chain, call, chunks) if chunks is not None else chain.request(call))
    except ProviderError as error:
        return await _failed(routed, chunks, code=error.code, message=error.message, attempts=attempts)
    except TimeoutError:
        message = f"the task did not finish within its deadline ({policy.task_deadline_s:g} s)"
        return await _failed(routed, chunks, code="provider_timeout", message=message, attempts=attempts)
    answered = chain.answered_by
    assert answered is not None
    candidate = next(c for c in candidates if c.model == answered.name)
    if chunks is not None:
        await chunks.done(finish_reason=reply.finish_reason)
    return TaskCompleted(
        task_id=task.task_id,
        tenant_id=task.tenant_id,
        user_id=task.user_id,
        api_key_id=task.api_key_id,
        model=candidate.model,
        provider=candidate.provider,
        tier=candidate.tier,
        content=reply.content,
        finish_reason=reply.finish_reason,
        usage=reply.usage,
        attempts=attempts,
        latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
        completed_at=datetime.now(UTC),
    )


async def _stream(chain: FallbackProvider, call: ProviderCall, chunks: ChunkSink) -> Reply:
    async for part in chain.stream(call):
        if isinstance(part, TextDelta):
            await chunks.delta(part.text)
        else:
            return part
    raise provider_error("bad_response", "the stream ended without a final reply")


async def _failed(
    routed: TaskRouted, chunks: ChunkSink | None, *, code: str, message: str, attempts: int
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
        attempts=attempts,
        failed_at=datetime.now(UTC),
    )


def _call_event(routed: TaskRouted, attempt: int, record: CallRecord) -> ProviderCallRecorded:
    return ProviderCallRecorded(
        task_id=routed.task.task_id,
        tenant_id=routed.task.tenant_id,
        attempt=attempt,
        provider=record.provider,
        model=record.model,
        outcome=record.outcome,
        error=None if record.error is None else redact(record.error),
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        usage=record.usage or Usage(),
    )
