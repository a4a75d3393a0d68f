"""The HTTP side of the cache for `serving.serve` and `serving.serve_embeddings`: read the request's cache
directive and look it up, settle a hit, and answer a completion's hit through the request's face (JSON, or
SSE replayed from the stored answer)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted
from switchyard.common.streaming import Chunk
from switchyard.gateway.admission import Pass
from switchyard.gateway.cache.models import CACHE_HEADER, parse_directive
from switchyard.gateway.cache.service import Lookup, ResponseCache
from switchyard.gateway.outcomes import STREAM_START
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.tenants import Principal


async def look_up(
    cache: ResponseCache | None, request: Request, principal: Principal, task: TaskSubmitted
) -> Lookup | None:
    """The cache's answer for this request (raises a 400 for an invalid `x-switchyard-cache`)."""
    directive = parse_directive(request.headers.get(CACHE_HEADER), request.headers.get("cache-control"))
    if cache is None:
        return None
    return await cache.lookup(
        tenant_id=principal.tenant_id, plan=principal.plan, task=task, directive=directive
    )


async def _nothing() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    return
    yield


async def settle(cache: ResponseCache, task: TaskSubmitted, found: Lookup, admitted: Pass) -> TaskCompleted:
    """A hit as the task's result: published on the bus (the ledger records it, billing at zero cost), and
    its admission settled: the request counted against the rate limits, no tokens, no spend."""
    try:
        done = await cache.answer(task, found)
        admitted.observe(done)
    finally:
        await admitted.close()
    return done


async def answer(
    cache: ResponseCache,
    face: Any,
    parsed: ChatCompletionRequest,
    task: TaskSubmitted,
    found: Lookup,
    admitted: Pass,
    headers: dict[str, str],
    screen: Callable[[TaskCompleted], Awaitable[TaskCompleted]] | None = None,
    timing: Callable[[TaskCompleted], dict[str, str]] | None = None,
) -> Response:
    """A hit: recorded on the bus, settled at zero cost, and answered as the face answers a completion,
    after the output guardrails of the caller (`screen`): the cache is the organisation's, the guardrails'
    chain its user's plan's, and the answer may have been stored for a user whose chain let it through.
    `timing`: a plain answer's `x-switchyard-overhead-ms` and `server-timing`."""
    done = await settle(cache, task, found, admitted)
    if screen is not None:
        done = await screen(done)
    headers = {**headers, "x-switchyard-model": done.model, "x-switchyard-tier": done.tier}
    if not parsed.stream:
        if face.keep is not None:
            await face.keep(task, done)
        if timing is not None:
            headers.update(timing(done))
        return Response(face.render(task, done), media_type="application/json", headers=headers)
    include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta=done.content, model=done.model), done]
    events = face.stream(task, head, _nothing(), timeout_s=1.0, include_usage=include_usage)
    headers[STREAM_START] = "output"  # as every stream's response says how it started
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)
