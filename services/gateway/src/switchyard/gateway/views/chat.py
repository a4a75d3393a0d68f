from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from switchyard.gateway import completions
from switchyard.gateway.auth import authenticate
from switchyard.gateway.state import gateway_of

router = APIRouter()


@router.post("/v1/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def chat_completions(request: Request) -> Response:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    body = await completions.read_body(request, limit=gw.settings.max_body_bytes)
    parsed = completions.parse_request(body, max_prompt_chars=gw.settings.max_prompt_chars)
    await gw.catalog.check(parsed.model)
    task = completions.build_task(parsed, principal, priority=request.headers.get("x-switchyard-priority"))
    headers = {"x-switchyard-task-id": task.task_id}
    timeout = gw.settings.task_timeout_s
    if parsed.stream:
        head, rest = await completions.open_stream(gw.tasks, task, timeout_s=timeout)
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        events = completions.stream_events(task, head, rest, timeout_s=timeout, include_usage=include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    done = await completions.complete(gw.tasks, task, timeout_s=timeout)
    headers["x-switchyard-model"] = done.model
    headers["x-switchyard-tier"] = done.tier
    return Response(completions.completion_json(task, done), media_type="application/json", headers=headers)
