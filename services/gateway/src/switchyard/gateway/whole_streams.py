"""Streams answered whole: a tenant's output guardrails screen the whole answer before any of it is sent,
so its stream is one event (the face's rendering of the whole answer), not the model's chunks.

Its wait is a stream's (`keepalive.py`): the answer is awaited before the response starts, so that a
failure before it is answered with its HTTP status, but no longer than SWITCHYARD_STREAM_KEEPALIVE_S on a
face with keep-alives; the response then starts (`x-switchyard-stream-start: keep-alive`, the model being
called in `x-switchyard-model` when the stream has named it), keep-alives fill the wait, and the screened
answer, or the failure as the stream's error event, follows. The task's stream is read for its bounds (its
first output, silences, a cap: a long answer that keeps flowing is waited for) and for the model it names;
its chunks are not sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted
from switchyard.common.streaming import Chunk
from switchyard.gateway import keepalive, outcomes, overhead, settling
from switchyard.gateway.admission import Pass
from switchyard.gateway.budgets.capped import uncut
from switchyard.gateway.cache.service import Lookup
from switchyard.gateway.errors import TaskTimeout, request_id_of
from switchyard.gateway.faces import Face
from switchyard.gateway.state import Gateway
from switchyard.gateway.tasks import TimedOut
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)


@dataclass
class Held:
    """A whole answer's stream whose response starts before the answer came: the model its stream named
    so far (None: none yet), and the answer's reading, which raises TimedOut or Stopped."""

    model: str | None
    answer: asyncio.Future[TaskCompleted | TaskFailed]


@dataclass(frozen=True)
class Asked:
    """One whole stream's request: who asked, through which face, how its answer is rendered."""

    request: Request
    principal: Principal
    face: Face
    cached: Lookup | None
    started: float  # the request's arrival (perf_counter)
    timeout_s: float
    include_usage: bool


async def open_answer(
    gw: Gateway,
    task: TaskSubmitted,
    *,
    timeout_s: float,
    idle_s: float,
    early_s: float,
    observe: outcomes.Observe,
) -> TaskCompleted | Held:
    """The task's answer if it comes within `early_s` (its failure raised as its HTTP error, after
    `observe` saw it), else what is known then (`Held`). The waits are a stream's (`TaskClient.stream`)."""
    items = gw.tasks.stream(
        task, timeout_s=timeout_s, idle_s=idle_s, max_s=gw.settings.stream_max_timeout_s, stop=gw.stop
    )
    named: list[str] = []
    reading = asyncio.ensure_future(_answer(items, named))
    if not await outcomes.ended_within(reading, early_s):
        return Held(named[-1] if named else None, reading)
    try:
        answer = reading.result()
    except TimedOut as exc:
        raise TaskTimeout(f"{exc}; it was recorded as timed out") from None
    if observe is not None:
        observe(answer)
    if isinstance(answer, TaskFailed):
        outcomes.raise_for_failure(answer)
    return answer


async def _answer(
    items: AsyncIterator[Chunk | TaskCompleted | TaskFailed], named: list[str]
) -> TaskCompleted | TaskFailed:
    """The stream's outcome; the models its chunks name are noted in `named` as they come."""
    try:
        async for item in items:
            if isinstance(item, Chunk):
                if item.model is not None:
                    named.append(item.model)
                continue
            return item
        raise RuntimeError("the task's stream ended without its outcome")
    finally:
        await items.aclose()  # type: ignore[attr-defined]


async def screened(gw: Gateway, asked: Asked, task: TaskSubmitted, done: TaskCompleted) -> TaskCompleted:
    """The answer kept in the cache as the model gave it (each hit passes its own reader's output hooks),
    then through the output guardrails."""
    if asked.cached is not None and gw.cache is not None and uncut(task, done):
        await gw.cache.keep(asked.cached, done)
    if gw.guardrails is None:
        return done
    where = {"request_id": request_id_of(asked.request), "endpoint": asked.request.url.path}
    return await gw.guardrails.screen_output(done, principal=asked.principal, **where)


async def screened_or_failed(
    gw: Gateway, asked: Asked, task: TaskSubmitted, done: TaskCompleted
) -> TaskCompleted | TaskFailed:
    """`screened`, in a response already started: its error (a bug) can no longer be the request's 500, so
    it is the stream's error event (a TaskFailed for the face to render), the unscreened answer never
    sent. The answer was billed and its admission settled as given."""
    try:
        return await screened(gw, asked, task, done)
    except Exception:
        log.exception("screening the answer of task %s failed", task.task_id)
        return TaskFailed(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            error_code="internal_error",
            error_message="internal error; the request id identifies it in our logs",
            failed_at=datetime.now(UTC),
        )


def answered(asked: Asked, task: TaskSubmitted, done: TaskCompleted, headers: dict[str, str]) -> Response:
    """The screened answer as one stream, started with it."""
    headers.update(
        {
            "x-switchyard-model": done.model,
            "x-switchyard-tier": done.tier,
            outcomes.STREAM_START: "output",
            **overhead.headers(asked.started, done),
        }
    )
    if done.logprobs_truncated:
        headers["x-switchyard-logprobs"] = "truncated"
    events = asked.face.stream(
        task, [done], _nothing(), timeout_s=asked.timeout_s, include_usage=asked.include_usage
    )
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def started_early(
    gw: Gateway, asked: Asked, task: TaskSubmitted, admitted: Pass, held: Held, headers: dict[str, str]
) -> Response:
    """The response started before the answer came: keep-alives until it does, then the screened answer,
    or the failure as the face's error event. The admission is settled as a stream's is."""
    head: list[Chunk | TaskCompleted] = [] if held.model is None else [Chunk(seq=0, model=held.model)]
    headers.update(outcomes.stream_headers(head))

    async def rest() -> AsyncIterator[TaskCompleted | TaskFailed]:
        answer = await held.answer  # TimedOut, Stopped: the face's error event
        admitted.observe(answer)
        yield answer if isinstance(answer, TaskFailed) else await screened_or_failed(gw, asked, task, answer)

    face = asked.face
    stream = face.stream(task, head, rest(), timeout_s=asked.timeout_s, include_usage=asked.include_usage)
    events = keepalive.beating(stream, face.beat, every_s=gw.settings.stream_keepalive_s)

    async def body() -> AsyncIterator[bytes]:
        ended = False
        try:
            async for event in events:
                yield event
            ended = True
        finally:
            held.answer.cancel()  # the client went away, or the stream ended: nothing more is read
            state, started = asked.request.state, asked.started
            settling.stream_ended(gw, task, admitted, ended=ended, state=state, started=started)

    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def serve(
    gw: Gateway,
    asked: Asked,
    task: TaskSubmitted,
    admitted: Pass,
    headers: dict[str, str],
    *,
    idle_s: float,
    early_s: float,
) -> Response:
    """A stream answered whole on a face with keep-alives (`early_s`: how long its answer is awaited
    before the response starts)."""
    opening = open_answer(
        gw, task, timeout_s=asked.timeout_s, idle_s=idle_s, early_s=early_s, observe=admitted.observe
    )
    opened = await settling.opened(gw, task, admitted, opening)
    if isinstance(opened, Held):
        return started_early(gw, asked, task, admitted, opened, headers)
    gw.admission.settle_soon(admitted)
    return answered(asked, task, await screened(gw, asked, task, opened), headers)


async def _nothing() -> AsyncIterator[Any]:
    return
    yield
