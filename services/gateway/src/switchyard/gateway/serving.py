"""Serving a completion through one of the gateway's faces (`faces.py`: OpenAI chat completions, responses
and legacy completions, Anthropic messages): authenticate, read and validate, admit (limits, budget), run
the task on the bus, answer (JSON or SSE), then settle what the task used. The views only call `serve`
(and `serve_embeddings`, the same steps for OpenAI's embeddings)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from switchyard.common import tracing
from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted
from switchyard.gateway import (
    bodies,
    bounds,
    completions,
    embeddings,
    keepalive,
    outcomes,
    overhead,
    settling,
    timeouts,
    whole_streams,
)
from switchyard.gateway.admission import Pass
from switchyard.gateway.auth import authenticate
from switchyard.gateway.budgets.capped import budgeted, uncut
from switchyard.gateway.cache import replay
from switchyard.gateway.cache.service import Lookup
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.errors import (
    GatewayStopping,
    TaskTimeout,
    request_id_of,
)
from switchyard.gateway.faces import Face
from switchyard.gateway.gone import unless_gone
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.state import Gateway, gateway_of
from switchyard.gateway.taskapi import body as task_body
from switchyard.gateway.taskapi import idempotency, keyed
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.tasks import AckLost
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)


async def serve(request: Request, face: Face) -> Response:
    """A completion through `face`. What a request holds while its answer is waited for (minutes, for a
    long one) is what rendering it needs, not what it asked: the body is let go once parsed, the parsed
    request once its task is built, and the task's messages once it is published (`TaskClient.run`): a
    coding agent's body of several MB was held 3 to 5 times over per request in flight (docs/performance.md,
    "Requests in flight"). Its body is taken in within the replica's room for bodies (`intake`)."""
    started = getattr(request.state, "started", None) or time.perf_counter()
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    async with gw.intake.taking(request):  # the body's bytes, up to its task's admission
        body = await bodies.read_request_body(request, gw.settings)
        if face.bind is not None:
            face = await face.bind(gw, principal, body)
        size = len(body)
        parse = functools.partial(face.parse, body, max_prompt_chars=gw.settings.max_prompt_chars)
        parsed = await bounds.read_off_loop(parse, size=size)
        del body, parse
        if gw.guardrails is not None:
            parsed = await gw.guardrails.screen_input(parsed, principal=principal, **_where(request))
        allowed = allowed_models(principal.key_policy)
        parsed.model = await gw.catalog.check(parsed.model, allowed=allowed)  # an alias: its model
        wait = timeouts.wait_for(request.headers, gw.settings, since=started)
        priority = request.headers.get("x-switchyard-priority")
        task = _bounded(completions.build_task(parsed, principal, priority=priority), wait.task_left())
        cached, stages, admitted, headers = await _admit(
            request, gw, principal, task, started=started, timeout_s=wait.left(), size=size
        )
        task = budgeted(task, admitted)
        timeout = wait.left()  # from the request's arrival: what it spent here is spent of it
    if cached is not None and cached.hit is not None and gw.cache is not None:
        screen = None
        if gw.guardrails is not None:
            where = _where(request)
            screen = functools.partial(
                gw.guardrails.screen_output,
                principal=principal,
                request_id=where["request_id"],
                endpoint=where["endpoint"],
            )
        timing = functools.partial(overhead.headers, started, stages=stages)
        return await replay.answer(gw.cache, face, parsed, task, cached, admitted, headers, screen, timing)
    stream, include_usage = parsed.stream, _include_usage(parsed)
    del parsed
    early_s = keepalive.opening_s(face.beat, gw.settings.stream_keepalive_s)
    # Output guardrails need the whole answer: a stream is then answered whole (`whole_streams`).
    if stream and gw.guardrails is not None and gw.guardrails.screens_output(principal):
        asked = whole_streams.Asked(request, principal, face, cached, started, timeout, include_usage)
        if early_s is not None:
            idle_s = wait.idle_s(gw.settings.stream_idle_timeout_s)
            return await whole_streams.serve(
                gw, asked, task, admitted, headers, idle_s=idle_s, early_s=early_s
            )
        done = await _answer(request, gw, task, admitted, timeout_s=timeout, stages=stages)
        done = await whole_streams.screened(gw, asked, task, done)
        return whole_streams.answered(asked, task, done, headers)
    if not stream:
        done = await _answer(request, gw, task, admitted, timeout_s=timeout, stages=stages)
        if cached is not None and gw.cache is not None and uncut(task, done):
            # kept as the model gave it: each hit passes its own reader's output hooks (`replay`), and a
            # user whose plan has none must not get another plan's redaction of the answer
            await gw.cache.keep(cached, done)
        if gw.guardrails is not None:
            done = await gw.guardrails.screen_output(done, principal=principal, **_where(request))
        headers["x-switchyard-model"] = done.model
        headers["x-switchyard-tier"] = done.tier
        if done.logprobs_truncated:  # a stream's is known only at its end, after its headers
            headers["x-switchyard-logprobs"] = "truncated"
        if face.keep is not None:
            await face.keep(task, done)
        content = face.render(task, done)
        headers.update(overhead.headers(started, done, stages))
        return Response(content, media_type="application/json", headers=headers)
    opening = outcomes.open_stream(
        gw.tasks,
        task,
        timeout_s=timeout,
        idle_s=wait.idle_s(gw.settings.stream_idle_timeout_s),
        max_s=gw.settings.stream_max_timeout_s,
        observe=admitted.observe,
        stop=gw.stop,
        early_s=early_s,
    )
    head, rest = await settling.opened(gw, task, admitted, opening)
    for item in head:
        admitted.observe(item)
    headers.update(outcomes.stream_headers(head))
    events = keepalive.beating(
        face.stream(task, head, admitted.tap(rest), timeout_s=timeout, include_usage=include_usage),
        face.beat,
        every_s=gw.settings.stream_keepalive_s,
    )

    async def body_then_settle() -> AsyncIterator[bytes]:
        ended = False
        try:
            async for chunk in events:
                yield chunk
            ended = True
        finally:
            settling.stream_ended(gw, task, admitted, ended=ended, state=request.state, started=started)
            if cached is not None and gw.cache is not None and (kept := uncut(task, admitted.outcome)):
                await gw.cache.keep(cached, kept)

    return StreamingResponse(body_then_settle(), media_type="text/event-stream", headers=headers)


async def _admit(
    request: Request,
    gw: Gateway,
    principal: Principal,
    task: TaskSubmitted,
    *,
    started: float,
    timeout_s: float,
    size: int,
) -> tuple[Lookup | None, overhead.Stages, Pass, dict[str, str]]:
    """A built task up to its admission: whether the bus can carry it (before anything is taken of the
    limits or the budget, whose estimates a task that size would only mislead), its cache look-up, the
    stages so far, its admission (rate limits, budget; `timeout_s`: how long its answer is waited for),
    and the response headers these give. `size`: the body's, which says whether its task is written on a
    worker thread."""
    tracing.annotate(
        task_id=task.task_id, tenant_id=principal.tenant_id, gen_ai__request__model=task.request.model
    )
    await gw.tasks.check_fits_off_loop(task, size=size)
    cached = await replay.look_up(gw.cache, request, principal, task)
    stages = overhead.Stages(started)
    stages.mark("prep")
    if gw.stop.cutting:  # the gateway's stop is ending what runs: nothing new is started
        raise GatewayStopping()
    admitted = await gw.admission.admit(
        principal,
        task.request,
        providers=await gw.catalog.providers(),
        task_id=task.task_id,
        timeout_s=timeout_s,
    )
    stages.mark("admit")
    headers = {"x-switchyard-task-id": task.task_id, **admitted.headers, **(cached.headers if cached else {})}
    return cached, stages, admitted, headers


async def _answer(
    request: Request,
    gw: Gateway,
    task: TaskSubmitted,
    admitted: Pass,
    *,
    timeout_s: float,
    stages: overhead.Stages,
    fail: Callable[[TaskFailed], NoReturn] = outcomes.raise_for_failure,
) -> TaskCompleted:
    """The task's whole answer (its failure raised as `fail` maps it), unless the client goes away first
    or it times out: the task is then cancelled or followed, and its admission settled at its outcome."""
    unanswered = False  # settled when its outcome comes, not now

    def on_gone() -> None:
        nonlocal unanswered
        unanswered = True
        settling.settle_later(gw, task, admitted, cancel=True)

    try:
        done = await unless_gone(
            request,
            completions.complete(gw.tasks, task, timeout_s=timeout_s, observe=admitted.observe, fail=fail),
            on_gone=on_gone,
            stop=gw.stop,
        )
        stages.mark("pipeline")
    except TaskTimeout:
        unanswered = True
        settling.settle_later(gw, task, admitted, cancel=False)
        raise
    finally:
        # in memory from the leases; what needs KV (near a limit) is written after the response
        if not unanswered:
            gw.admission.settle_soon(admitted)
    stages.mark("settle")
    return done


@dataclass(frozen=True)
class EmbeddingsFace:
    """How a face reads an embeddings request (the body, the gateway's settings) and renders its vectors
    (the rows, the result, the request)."""

    parse: Callable[[bytes, GatewaySettings], embeddings.Embeddings]
    render: Callable[[embeddings.Rows, TaskCompleted, embeddings.Embeddings], bytes]


def _openai_embeddings(body: bytes, settings: GatewaySettings) -> embeddings.Embeddings:
    return embeddings.parse_request(
        body, max_prompt_chars=settings.max_prompt_chars, max_text_bytes=settings.max_body_bytes
    )


def _openai_vectors(rows: embeddings.Rows, done: TaskCompleted, parsed: embeddings.Embeddings) -> bytes:
    return embeddings.embeddings_json(
        rows, model=done.model, usage=done.usage, encoding_format=parsed.encoding_format
    )


OPENAI_EMBEDDINGS = EmbeddingsFace(_openai_embeddings, _openai_vectors)


async def serve_embeddings(request: Request, face: EmbeddingsFace = OPENAI_EMBEDDINGS) -> Response:
    """`POST /v1/embeddings` (and the Gemini face's embedding methods, `face`): as a completion is served,
    with no stream and no output guardrails; the named model is checked before the inputs pass the input
    guardrails. The response cache is exact only, keyed on the texts as sent (after decoding and the
    guardrails); a hit is answered from the stored vectors."""
    started = getattr(request.state, "started", None) or time.perf_counter()
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    async with gw.intake.taking(request):  # the body's bytes, up to its task's admission
        body = await bodies.read_request_body(request, gw.settings)
        size = len(body)
        parsed = await bounds.read_off_loop(functools.partial(face.parse, body, gw.settings), size=size)
        del body
        priority = request.headers.get("x-switchyard-priority")
        wait = timeouts.wait_for(request.headers, gw.settings, since=started)
        parsed, task = await _embedding_task(gw, principal, parsed, priority=priority, where=_where(request))
        task = _bounded(task, wait.task_left())
        cached, stages, admitted, headers = await _admit(
            request, gw, principal, task, started=started, timeout_s=wait.left(), size=size
        )
    timeout = wait.left()
    if cached is not None and cached.hit is not None and gw.cache is not None:
        done = await replay.settle(gw.cache, task, cached, admitted)
    else:
        done = await _answer(
            request, gw, task, admitted, timeout_s=timeout, stages=stages, fail=embeddings.raise_for_failure
        )
    try:
        rows = await gw.embedding_results.rows(task, done)
        content = face.render(rows, done, parsed)
    finally:
        gw.embedding_results.discard(done)  # read or unreadable, nobody else reads it
    stages.mark("vectors")
    if cached is not None and gw.cache is not None:
        await gw.cache.keep(cached, done)  # inline vectors only, read and checked above
    headers["x-switchyard-model"] = done.model
    headers["x-switchyard-tier"] = done.tier
    headers.update(overhead.headers(started, done, stages))
    return Response(content, media_type="application/json", headers=headers)


async def _embedding_task(
    gw: Gateway,
    principal: Principal,
    parsed: embeddings.Embeddings,
    *,
    priority: str | None,
    where: dict[str, str],
) -> tuple[embeddings.Embeddings, TaskSubmitted]:
    """An embeddings request's task: its model checked (an alias: the model it stands for), then its
    inputs through the input guardrails."""
    model = await gw.catalog.check_embedding(
        parsed.model,
        inputs=len(parsed.inputs),
        dimensions=parsed.dimensions,
        allowed=allowed_models(principal.key_policy),
    )
    parsed = replace(parsed, model=model)
    if gw.guardrails is not None:
        screened = await gw.guardrails.screen_inputs(parsed.inputs, principal=principal, **where)
        parsed = replace(parsed, inputs=screened)
    return parsed, embeddings.build_task(parsed, principal, priority=priority)


def _bounded(task: TaskSubmitted, timeout_s: float | None) -> TaskSubmitted:
    """The task with the bound its client asked for (`TaskSubmitted.timeout_s`), if any."""
    return task if timeout_s is None else task.model_copy(update={"timeout_s": timeout_s})


async def submit(request: Request) -> TaskState:
    """The task API: admitted like a completion, then submitted without waiting for the result."""
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    async with gw.intake.taking(request):  # the body's bytes, up to its task's admission and publishing
        body = await bodies.read_request_body(request, gw.settings)
        parse = functools.partial(
            _task_request, body, max_prompt_chars=gw.settings.max_prompt_chars, key=gw.body_key
        )
        parsed, digest = await bounds.read_off_loop(parse, size=len(body))
        size = len(body)
        del body
        state = await submit_parsed(
            gw,
            principal,
            parsed,
            digest=digest,
            size=size,
            key=idempotency.idempotency_key(request),
            priority=request.headers.get("x-switchyard-priority"),
            where=_where(request),
            timeout_s=timeouts.unattended(request.headers, gw.settings),
        )
    # A retry with its Idempotency-Key gets a finished task's result: screened as a status read's is.
    if gw.guardrails is not None:
        state = await gw.guardrails.screen_task(state, principal=principal, **_where(request))
    return state


def _task_request(
    body: bytes, *, max_prompt_chars: int, key: idempotency.BodyKey
) -> tuple[ChatCompletionRequest, idempotency.BodyDigest]:
    """The task API's request and its digest (`idempotency.digest`: what an Idempotency-Key's retry must
    say again), both read off the loop when the body is large."""
    return task_body.parse(body, max_prompt_chars=max_prompt_chars), idempotency.BodyDigest.of(body, key)


async def submit_parsed(
    gw: Gateway,
    principal: Principal,
    parsed: ChatCompletionRequest | embeddings.Embeddings,
    *,
    digest: idempotency.BodyDigest,
    key: str | None,
    priority: str | None,
    where: dict[str, str],
    task_id: str | None = None,
    batch: bool = False,
    timeout_s: float | None = None,
    size: int = 0,
) -> TaskState:
    """A parsed chat request submitted as a task (the task API's steps after reading the body: input
    guardrails, the model catalogue, admission), or an embeddings request (a batch's line: as
    `serve_embeddings` prepares it); `digest` is the body's (`idempotency.BodyDigest`). With an
    idempotency `key` the task id is derived from it (or is `task_id`, a caller's own derivation: the
    batch runner's), the key is claimed before the task is published, and a task already there is answered
    instead (`keyed`). A `batch` line is admitted within its organisation's batch slots
    (`limits.models.checks`), and its task says it is one (`TaskSubmitted.batch`). Nobody waits for the
    task on a connection: it may run `timeout_s` (default: the longest a request may, `timeouts`). `size`:
    the body's (a large one's task is written on a worker thread)."""
    claim_key: str | None = None
    if key is not None:  # a retry gets its task back, whatever would refuse a new one now (`keyed.replay`)
        claim_key = idempotency.claim_key(principal.tenant_id, key, task_id=task_id)
        kept = [task_id] if task_id else idempotency.task_ids(principal.tenant_id, key, datetime.now(UTC))
        found = await keyed.replay(
            gw.runs, claim_key=claim_key, digest=digest, kept=kept, tenant_id=principal.tenant_id, key=key
        )
        if found is not None:
            return found
    if isinstance(parsed, embeddings.Embeddings):
        _, task = await _embedding_task(gw, principal, parsed, priority=priority, where=where)
    else:
        parsed = parsed.model_copy(update={"stream": False})
        if gw.guardrails is not None:
            parsed = await gw.guardrails.screen_input(parsed, principal=principal, **where)
        parsed.model = await gw.catalog.check(parsed.model, allowed=allowed_models(principal.key_policy))
        task = completions.build_task(parsed, principal, priority=priority)
    if batch:  # an embedding line's large vectors are then kept for the batch (`vectors.keep`)
        task = task.model_copy(update={"batch": True})
    task = _bounded(task, gw.settings.request_timeout_max_s if timeout_s is None else timeout_s)
    # It may wait for an executor (a backlog; a batch's lines): its bound counts from its start, and its
    # result is read until the task API stops following it (`timeouts`).
    followed = timedelta(seconds=gw.settings.async_task_timeout_s)
    task = task.model_copy(update={"timeout_from": "started", "deadline": task.submitted_at + followed})
    tracing.annotate(tenant_id=principal.tenant_id, gen_ai__request__model=task.request.model)
    if key is not None:  # a new task's id (`keyed`)
        task = task.model_copy(update={"task_id": kept[0]})
    await gw.tasks.check_fits_off_loop(task, size=size)  # before admission, as `_admit` checks

    async def admit(task: TaskSubmitted) -> Pass:
        return await gw.admission.admit(
            principal,
            task.request,
            providers=await gw.catalog.providers(),
            task_id=task.task_id,
            timeout_s=gw.settings.async_task_timeout_s,
            batch=batch,
        )

    if key is not None:
        return await keyed.submit(gw.runs, task, key=key, digest=digest, admit=admit, claim_key=claim_key)
    admitted = await admit(task)
    try:
        return await gw.runs.submit(task=task, admitted=admitted)
    except AckLost:  # the stream may hold it: its admission stands, settled by its outcome (`TaskRuns`)
        raise
    except BaseException:
        await admitted.close()
        raise


async def read_task(request: Request, task_id: str, *, cancel: bool = False) -> TaskState:
    """The task API's status read (or cancellation): its result passes the output guardrails."""
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    state = await (gw.runs.cancel if cancel else gw.runs.get)(principal=principal, task_id=task_id)
    if gw.guardrails is not None:
        state = await gw.guardrails.screen_task(state, principal=principal, **_where(request))
    return state


def _include_usage(parsed: ChatCompletionRequest) -> bool:
    """Whether a stream ends with its usage (`stream_options.include_usage`)."""
    return bool(parsed.stream_options and parsed.stream_options.include_usage)


def _where(request: Request) -> dict[str, str]:
    return {"request_id": request_id_of(request), "endpoint": request.url.path}


def schema_of(model: Any) -> dict[str, Any]:
    """A request body schema for `openapi_extra` (the views read the raw body for exact errors)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {
        "x-schemas": defs,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        },
    }
