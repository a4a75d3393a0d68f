"""A task's outcome as every face takes it from the bus: its failure as the HTTP error the client gets,
and its stream's chunks opened (the first output awaited before the response starts) and read in order,
a gap, an error chunk or the task's failure ending them as a Fault. Each face renders them its own way
(chat completions, legacy completions, Messages, Responses)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted
from switchyard.common.streaming import Chunk
from switchyard.gateway.errors import (
    APIError,
    InvalidRequest,
    PermissionDenied,
    ProviderContextTooLong,
    RateLimited,
    ServiceUnavailable,
    TaskTimeout,
    UpstreamFailed,
)
from switchyard.gateway.errors import ModelNotFound as ModelNotFoundError
from switchyard.gateway.stopping import Stop
from switchyard.gateway.tasks import TaskClient, TimedOut

# Sees a task's outcome (its admission settles at what it was charged), also one raised as an error.
Observe = Callable[[TaskCompleted | TaskFailed], None] | None

# Task failures that are the client's doing map to 4xx (the error, and the request field to name); the rest
# are upstream failures (502).
CLIENT_FAILURES: dict[str, tuple[type[APIError], str | None]] = {
    "model_not_found": (ModelNotFoundError, "model"),
    "model_lacks_capability": (InvalidRequest, "model"),
    "model_not_allowed": (PermissionDenied, "model"),  # the key's allow-list (the gateway refuses it first)
    "context_length_exceeded": (InvalidRequest, "messages"),  # no available model's context window fits
    "capability_unavailable": (InvalidRequest, None),  # no available model has what the task needs
    "provider_context_too_long": (ProviderContextTooLong, "messages"),  # said `context_length_exceeded`
    "provider_content_policy": (InvalidRequest, None),
    "provider_bad_request": (InvalidRequest, None),
    # the pipeline's tenant registry lists no such organisation: one erased while its request ran
    "unknown_tenant": (PermissionDenied, None),
}
UNAVAILABLE_FAILURES = ("no_provider_available",)
# The task's bound passed while it waited for an executor (a backlog): it was not run, and its client's wait
# is over as a timeout's (504).
EXPIRED_FAILURES = ("task_expired",)
# Every candidate was at capacity, or behind an open circuit breaker (its provider failed repeatedly and is
# left alone for a cool-down): busy, not broken (503, with the last provider's Retry-After or the breaker's
# time left when known), so clients wait instead of retrying at once into the same refusal.
BUSY_FAILURES = ("provider_overloaded", "provider_rate_limited", "provider_circuit_open")
# Whether the same request, sent again, gets past an upstream failure (502), where it is known (else the
# status decides: the SDKs retry it): a key the executor holds for the provider that is wrong (401/403), or
# its account out of credit, stays so until an operator acts, so `x-should-retry: false` (the SDKs would
# send it twice more); an executor that stopped (a restart) leaves the task to another. Where several
# candidates failed, the task's code is the last candidate's (`FallbackProvider._exhausted`), and so is this
# choice, except that a wrong key or no credit on the last one gives way to an earlier candidate's passing
# failure (busy, timed out): a retry can reach that one again; the others' causes are in the message only.
UPSTREAM_RETRY: dict[str, bool] = {
    "provider_auth": False,
    "provider_quota_exhausted": False,  # the provider account is out of credit until an operator tops it up
    "executor_stopping": True,
    # a service's handler never finished on the task at any delivery (executor/stranded.py): sent again it
    # would likely take a process down again
    "never_settled": False,
}


def raise_for_failure(failed: TaskFailed) -> NoReturn:
    raise failure_error(failed.error_code, failed.error_message, retry_after_s=failed.retry_after_s)


def failure_error(code: str, message: str, *, retry_after_s: float | None = None) -> APIError:
    """The error a task's failure (or a stream's Fault) is answered with: its status, type and code."""
    if code in CLIENT_FAILURES:
        error, param = CLIENT_FAILURES[code]
        return error(message, code=error.code if error is ProviderContextTooLong else code, param=param)
    if code == "budget_exceeded":  # a redone task whose cut run spent its reservation
        return RateLimited(f"The task failed: {message}", type_="insufficient_quota", code=code, retry=False)
    if code in EXPIRED_FAILURES:
        return TaskTimeout(f"The task was not run: {message}", code=code)
    if code in UNAVAILABLE_FAILURES:
        return ServiceUnavailable(message, code=code)
    if code in BUSY_FAILURES:
        wait = retry_after_s
        headers = {"Retry-After": str(max(1, math.ceil(wait)))} if wait is not None else None
        return ServiceUnavailable(  # once Retry-After has passed, a retry finds the provider again
            f"The task failed: {message}",
            code=code,
            headers=headers,
            retry=True if wait is not None else None,
        )
    return UpstreamFailed(f"The task failed: {message}", code=code, retry=UPSTREAM_RETRY.get(code))


def _output(chunk: Chunk) -> bool:
    """The chunk is output: text, tokens (which may come without text), reasoning or a tool call's
    piece."""
    return bool(chunk.delta or chunk.logprobs or chunk.reasoning() or chunk.tool_call)


def sse(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_error(message: str, code: str, type_: str = "api_error", param: str | None = None) -> bytes:
    return sse({"error": {"message": message, "type": type_, "code": code, "param": param}})


def fault_sse(fault: Fault) -> bytes:
    """A stream's fault as OpenAI's mid-stream `error` (chat and legacy completions): the type, code and
    param the same failure is answered with before the stream (`failure_error`), which the OpenAI SDK
    raises as `APIError.type` / `.code` / `.param` (its `_streaming.py` raises the `error` object as the
    error's body), so a client acts on a mid-stream failure as on the same failure answered with its
    status (`service_unavailable` for every candidate busy; it was `api_error` for all)."""
    said = failure_error(fault.code, fault.message)
    return sse_error(fault.message, said.code, said.type, said.param)


async def open_stream(
    client: TaskClient,
    task: TaskSubmitted,
    *,
    timeout_s: float,
    idle_s: float | None = None,
    max_s: float | None = None,
    observe: Observe = None,
    stop: Stop | None = None,
    early_s: float | None = None,
) -> tuple[list[Chunk | TaskCompleted], AsyncIterator[Chunk | TaskCompleted | TaskFailed]]:
    """Waits for the first output, text or reasoning (or the end), before the HTTP response starts, so
    that a task failing before any output gets a proper HTTP error status instead of a 200 stream with an
    error inside. Raises Stopped once the gateway's `stop` ends its requests, as the stream does later.
    The waits: `TaskClient.stream`'s.

    With `early_s` (a face that has keep-alives, `keepalive.py`), the wait for the first output is that
    long at most: then the head is what came before it, chunks that only name the model being called
    (`started_early`), and the rest the remainder of the stream, its first output still awaited, so that
    the response starts and its keep-alives fill a silence a proxy would close (a model thinking for
    minutes before its first token); a failure before the first output is then the stream's error event,
    as one after it is, and reaches `observe` only through the face's stream (its `tap`)."""
    items = client.stream(task, timeout_s=timeout_s, idle_s=idle_s, max_s=max_s, stop=stop)
    try:
        if early_s is None:
            head, failed = await _first_output(items)
        else:
            read: list[Chunk | TaskCompleted] = []
            opening = asyncio.ensure_future(_first_output(items, read))
            if not await ended_within(opening, early_s):
                head = list(read)  # no output among them, or `opening` would be done
                return head, _resumed(opening, items, after=len(head))
            head, failed = opening.result()
    except TimedOut as exc:
        raise TaskTimeout(f"{exc}; it was recorded as timed out") from None
    if failed is not None:
        await items.aclose()
        if observe is not None:
            observe(failed)
        raise_for_failure(failed)
    return head, items


async def ended_within(opening: asyncio.Future[Any], early_s: float) -> bool:
    """Whether `opening` (a stream's first reading) ended within `early_s`; it is cancelled with the
    request's task if that is cancelled while it waits."""
    try:
        done, _ = await asyncio.wait({opening}, timeout=early_s)
    except BaseException:
        opening.cancel()
        raise
    return bool(done)


async def _first_output(
    items: AsyncIterator[Chunk | TaskCompleted | TaskFailed],
    head: list[Chunk | TaskCompleted] | None = None,
) -> tuple[list[Chunk | TaskCompleted], TaskFailed | None]:
    """What the stream sent up to its first output (text, tokens, reasoning, a tool call's piece, an error
    chunk or its end), or its failure before it; `head` is filled as they come."""
    head = [] if head is None else head
    async for item in items:
        if isinstance(item, TaskFailed):
            return head, item
        head.append(item)
        if not isinstance(item, Chunk) or item.error or item.done or _output(item):
            break
    return head, None


async def _resumed(
    opening: asyncio.Future[tuple[list[Chunk | TaskCompleted], TaskFailed | None]],
    items: AsyncGenerator[Chunk | TaskCompleted | TaskFailed, None],
    *,
    after: int,
) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    """A stream whose response started before its first output (`open_stream`'s `early_s`): what `opening`
    read up to it past the `after` items the response's head holds (its failure included, which the face
    renders as its error event), then the rest. Its waits' errors (TimedOut, Stopped) are raised here,
    where the face's stream turns them into events."""
    try:
        head, failed = await opening
        for first in head[after:]:
            yield first
        if failed is not None:
            yield failed
            return
        async for item in items:
            yield item
    finally:
        if not opening.done():  # it is reading `items`: stopped first, which also ends them
            opening.cancel()
            await asyncio.wait({opening})
        await items.aclose()


def head_model(head: list[Chunk | TaskCompleted]) -> str | None:
    """The model answering, as far as the stream's head names it (its first chunk names the model begun;
    a reset, the next one): once output came, the model that gave it; in a head that started early
    (`started_early`), the model being called then, which a fallback before the first output replaces."""
    model = None
    for item in head:
        model = item.model or model
    return model


def started_early(head: list[Chunk | TaskCompleted]) -> bool:
    """The stream's response starts before its first output (`open_stream`'s `early_s`): its head holds
    only chunks naming a model, if any."""
    return all(isinstance(item, Chunk) and item.names_model() for item in head)


STREAM_START = "x-switchyard-stream-start"


def stream_headers(head: list[Chunk | TaskCompleted]) -> dict[str, str]:
    """What a stream's response says as it starts: `x-switchyard-stream-start`, `output` (at its first
    output, or its end) or `keep-alive` (before it, after SWITCHYARD_STREAM_KEEPALIVE_S); and
    `x-switchyard-model`, the model answering (`head_model`: the one whose output began, or the one being
    called when the response started early), when the head names one: one that started before an
    executor began the task names none."""
    headers = {STREAM_START: "keep-alive" if started_early(head) else "output"}
    model = head_model(head)
    if model is not None:
        headers["x-switchyard-model"] = model
    return headers


async def chained(
    head: list[Chunk | TaskCompleted], rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed]
) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    for item in head:
        yield item
        if isinstance(item, TaskCompleted):
            return
    async for later in rest:
        yield later


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a stream ended without its answer: a chunk missing, a chunk's error, or the task's failure."""

    code: str
    message: str


async def in_order(
    head: list[Chunk | TaskCompleted], rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed]
) -> AsyncIterator[Chunk | TaskCompleted | Fault]:
    """A stream's chunks in their order, then its answer; a gap in the chunks' numbering, an error chunk or
    the task's failure ends it as a Fault, which every face renders as its error event (never as an end)."""
    expected = 0
    async for item in chained(head, rest):
        if isinstance(item, TaskFailed):
            yield Fault(item.error_code, item.error_message)
            return
        if isinstance(item, Chunk):
            if item.seq != expected:
                yield Fault(
                    "stream_gap",
                    "the answer's stream broke off: a part of it was lost, or the executor running it "
                    f"stopped and another started it over (chunk {item.seq} came where {expected} was due); "
                    "what was sent is incomplete: send the request again",
                )
                return
            expected += 1
            if item.error is not None:
                yield Fault(item.error.code, item.error.message)
                return
        yield item
