"""Serving a completion through one of the gateway's faces (OpenAI chat completions, Anthropic
messages): authenticate, read and validate, admit (limits, budget), run the task on the bus, answer
(JSON or SSE), then settle what the task used. The views only call `serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from switchyard.common.events import TaskCompleted, TaskSubmitted
from switchyard.gateway import completions, messages
from switchyard.gateway.auth import authenticate
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.state import gateway_of
from switchyard.gateway.taskapi.models import TaskState


@dataclass(frozen=True)
class Face:
    parse: Callable[..., ChatCompletionRequest]
    render: Callable[[TaskSubmitted, TaskCompleted], bytes]
    stream: Callable[..., AsyncIterator[bytes]]


OPENAI = Face(completions.parse_request, completions.completion_json, completions.stream_events)
ANTHROPIC = Face(messages.parse_request, messages.message_json, messages.stream_events)


async def serve(request: Request, face: Face) -> Response:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    body = await completions.read_body(request, limit=gw.settings.max_body_bytes)
    parsed = face.parse(body, max_prompt_chars=gw.settings.max_prompt_chars)
    await gw.catalog.check(parsed.model)
    task = completions.build_task(parsed, principal, priority=request.headers.get("x-switchyard-priority"))
    admitted = await gw.admission.admit(principal, task.request, providers=await gw.catalog.providers())
    headers = {"x-switchyard-task-id": task.task_id, **admitted.headers}
    timeout = gw.settings.task_timeout_s
    if not parsed.stream:
        try:
            done = await completions.complete(gw.tasks, task, timeout_s=timeout)
            admitted.observe(done)
        finally:
            await admitted.close()
        headers["x-switchyard-model"] = done.model
        headers["x-switchyard-tier"] = done.tier
        return Response(face.render(task, done), media_type="application/json", headers=headers)
    try:
        head, rest = await completions.open_stream(gw.tasks, task, timeout_s=timeout)
    except BaseException:
        await admitted.close()
        raise
    for item in head:
        admitted.observe(item)
    include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
    events = face.stream(task, head, admitted.tap(rest), timeout_s=timeout, include_usage=include_usage)

    async def body_then_settle() -> AsyncIterator[bytes]:
        try:
            async for chunk in events:
                yield chunk
        finally:
            await admitted.close()

    return StreamingResponse(body_then_settle(), media_type="text/event-stream", headers=headers)


async def submit(request: Request) -> TaskState:
    """The task API: admitted like a completion, then submitted without waiting for the result."""
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    body = await completions.read_body(request, limit=gw.settings.max_body_bytes)
    parsed = completions.parse_request(body, max_prompt_chars=gw.settings.max_prompt_chars)
    parsed = parsed.model_copy(update={"stream": False})
    await gw.catalog.check(parsed.model)
    task = completions.build_task(parsed, principal, priority=request.headers.get("x-switchyard-priority"))
    admitted = await gw.admission.admit(principal, task.request, providers=await gw.catalog.providers())
    try:
        return await gw.runs.submit(task=task, admitted=admitted)
    except BaseException:
        await admitted.close()
        raise


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
