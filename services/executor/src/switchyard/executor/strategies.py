"""The three ways to run a task's candidates. Each returns the candidate that answered and its reply, or
raises the ProviderError that ended it.

- single: one at a time, each a fallback of the one before (streams when the client streams).
- cascade: the cheapest first; an answer that fails a quality check escalates to the next candidate
  (within the answers a hard budget covers, `TaskBudget.calls`).
- parallel: the first `fan_out` at once; a race takes the first answer and cancels the others, best-of
  waits for all and keeps the best-scored one; if they all fail, the rest are tried one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from switchyard.common.errors import ProviderError
from switchyard.common.events import RouteCandidate
from switchyard.executor.providers.base import ProviderCall, Reply
from switchyard.executor.providers.errors import provider_error, should_fall_back
from switchyard.executor.quality import Answer, Context, failures, score
from switchyard.executor.resilience.fallback import FallbackProvider, Target

MakeTarget = Callable[[RouteCandidate], Target]


@dataclass
class Result:
    candidate: RouteCandidate
    reply: Reply
    escalations: list[str] = field(default_factory=list)  # cascade: why each earlier answer was refused


async def _ask(target: Target, call: ProviderCall) -> Reply:
    return await target.provider.request(target.bind(call))


async def single(candidates: Sequence[RouteCandidate], make: MakeTarget, call: ProviderCall) -> Result:
    chain = FallbackProvider([make(c) for c in candidates])
    reply = await chain.request(call)
    return Result(_answered(candidates, chain), reply)


def _answered(candidates: Sequence[RouteCandidate], chain: FallbackProvider) -> RouteCandidate:
    assert chain.answered_by is not None
    return next(c for c in candidates if c.model == chain.answered_by.name)


async def cascade(
    candidates: Sequence[RouteCandidate],
    make: MakeTarget,
    call: ProviderCall,
    *,
    context: Context,
    checks: list[str],
    answers: int | None = None,
) -> Result:
    """`answers`: the most answers it may be billed for (a hard budget's `TaskBudget.calls`); the last
    of them is delivered whatever its checks say."""
    escalations: list[str] = []
    last_error: ProviderError | None = None
    kept: Result | None = None  # the last answer seen, delivered if no later candidate answers at all
    for index, candidate in enumerate(candidates):
        try:
            reply = await _ask(make(candidate), call)
        except ProviderError as error:
            if not should_fall_back(error):
                raise
            last_error = error
            continue
        problems = failures(
            Answer(reply.content, reply.finish_reason, bool(reply.tool_calls)), context, checks
        )
        last = index == len(candidates) - 1 or (answers is not None and len(escalations) + 1 >= answers)
        if not problems or last:
            return Result(candidate, reply, escalations)
        escalations.append(f"{candidate.model}: {'; '.join(problems)}")
        kept = Result(candidate, reply, escalations)
    if kept is not None:  # every stronger model failed outright: a checked-and-doubted answer beats none
        return kept
    assert last_error is not None
    raise last_error


async def parallel(
    candidates: Sequence[RouteCandidate],
    make: MakeTarget,
    call: ProviderCall,
    *,
    fan_out: int,
    mode: str,
    context: Context,
    checks: list[str],
) -> Result:
    racers, rest = list(candidates[:fan_out]), list(candidates[fan_out:])
    tasks = {asyncio.create_task(_ask(make(c), call)): c for c in racers}
    answers: list[Result] = []
    errors: list[ProviderError] = []
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    answers.append(Result(tasks[task], task.result()))
                elif isinstance(exc, ProviderError):
                    errors.append(exc)
                else:
                    raise exc
            if answers and mode == "race":
                break
    finally:
        for task in tasks:
            task.cancel()  # the losers: their calls are recorded as cancelled, and billed
        await asyncio.gather(*tasks, return_exceptions=True)
    if answers:
        return max(
            answers,
            key=lambda r: score(
                Answer(r.reply.content, r.reply.finish_reason, bool(r.reply.tool_calls)), context, checks
            ),
        )
    if any(not should_fall_back(e) for e in errors):
        raise next(e for e in errors if not should_fall_back(e))
    if rest:
        return await single(rest, make, call)
    raise errors[-1] if errors else provider_error("bad_response", "no parallel candidate answered")
