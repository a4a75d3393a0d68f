"""The Gemini face's answers: a `GenerateContentResponse` (candidates, usage, the model, the response id),
streamed as server-sent events of partial responses (`alt=sse`, what the SDKs ask for) or as the JSON
array Gemini streams without it; its errors in Google's shape; its models list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchyard.common.events import TaskCompleted, TaskSubmitted, ToolCall, Usage
from switchyard.gateway.completions import Answer, answers_of
from switchyard.gateway.errors_faces import gemini_error
from switchyard.gateway.messages_render import arguments_object
from switchyard.gateway.outcomes import Fault, failure_error, head_model, in_order
from switchyard.gateway.schemas import AnthropicModelInfo
from switchyard.gateway.tasks import Stopped, TimedOut

FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}


def usage_json(usage: Usage) -> dict[str, Any]:
    """Gemini's usage: `cachedContentTokenCount` is the part of the prompt read from a provider's prompt
    cache (any provider's: OpenAI's and Anthropic's cache reads too); `thoughtsTokenCount` the reasoning
    tokens, apart from `candidatesTokenCount` and within `totalTokenCount`, as Gemini counts them (left
    out when none or not known: reasoning a provider does not count apart stays in the candidates')."""
    out = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.answer_tokens,
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cache_read_tokens:
        out["cachedContentTokenCount"] = usage.cache_read_tokens
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    return out


def prompt_usage_json(prompt: Usage) -> dict[str, Any]:
    """A partial response's usage, before the answer's end: the prompt's count (the provider's, where its
    stream gave one, else the router's estimate: the first output chunk's `usage`) as its total, no
    candidates' count yet; Gemini sends `usageMetadata` so on every streamed chunk (seen on the wire:
    google-gemini-php/client#72, `promptTokenCount` and `totalTokenCount` on each chunk, the candidates'
    count on the last), and clients that read the usage of whichever chunk came last find it there."""
    out = {"promptTokenCount": prompt.prompt_tokens, "totalTokenCount": prompt.prompt_tokens}
    if prompt.cache_read_tokens:
        out["cachedContentTokenCount"] = prompt.cache_read_tokens
    return out


def _calls(calls: list[ToolCall] | None) -> list[dict[str, Any]]:
    return [
        {"functionCall": {"id": c.id, "name": c.function.name, "args": arguments_object(c)}}
        for c in calls or []
    ]


def _thoughts(answer: Answer) -> list[dict[str, Any]]:
    return [{"text": b.thinking, "thought": True} for b in answer.thinking or [] if b.thinking]


def _candidate(
    index: int, parts: list[dict[str, Any]], finish: str | None = None, *, refused: bool = False
) -> dict[str, Any]:
    """A candidate; a model's refusal (OpenAI's `refusal`, which Gemini's API has no field for) ends as
    Gemini ends an answer it will not give: `SAFETY`, the refusal's words as its text."""
    out: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
    if refused:
        finish = "content_filter"
    if finish is not None:
        out["finishReason"] = FINISH.get(finish, "OTHER")
    return out


def _parts(answer: Answer, *, thoughts: bool) -> list[dict[str, Any]]:
    """A whole answer's parts: its thoughts (when asked for), its text, its function calls."""
    parts = _thoughts(answer) if thoughts else []
    if answer.content or answer.refusal or not answer.tool_calls:
        parts.append({"text": answer.content or answer.refusal or ""})
    return parts + _calls(answer.tool_calls)


def response_json(task: TaskSubmitted, done: TaskCompleted, *, thoughts: bool) -> bytes:
    candidates = [
        _candidate(i, _parts(a, thoughts=thoughts), a.finish_reason, refused=bool(a.refusal))
        for i, a in enumerate(answers_of(done))
    ]
    return orjson.dumps(_response(task, done.model, candidates, done.usage))


def _response(
    task: TaskSubmitted,
    model: str,
    candidates: list[dict[str, Any]],
    usage: Usage | None = None,
    *,
    prompt: Usage | None = None,
) -> dict[str, Any]:
    """`usage`: the answer's (its last chunk); else `prompt`, the prompt's count (a partial response)."""
    out: dict[str, Any] = {"candidates": candidates}
    if usage is not None:
        out["usageMetadata"] = usage_json(usage)
    elif prompt is not None:
        out["usageMetadata"] = prompt_usage_json(prompt)
    out["modelVersion"] = model
    out["responseId"] = task.task_id
    return out


async def stream_events(
    task: TaskSubmitted,
    head: list[Any],
    rest: AsyncIterator[Any],
    *,
    timeout_s: float,
    thoughts: bool,
    sse: bool,
    request_id: str,
) -> AsyncIterator[bytes]:
    """Partial responses as the answer comes: each text (or, when asked for, thought) delta under its
    candidate's index, and each answer's function calls and finish reason at its end, the usage on the
    last (the prompt's count on each before it, once known: `prompt_usage_json`). A break ends with an
    `error` object (never a silent end), carrying the request's `request_id` as an error response does;
    framed as SSE or as a JSON array."""
    frame = _Frames(sse, request_id)
    model = head_model(head) or task.request.model
    started: set[int] = set()  # answers whose text began streaming
    thought: set[int] = set()  # answers whose thoughts went out as they came
    ended: set[int] = set()  # answers whose end went out (one of several)
    prompt: Usage | None = None  # the prompt's count, from the first output chunk
    try:
        async for item in in_order(head, rest):
            if isinstance(item, Fault):
                said = failure_error(item.code, item.message)  # as the same failure answered before
                yield frame.error(said.status, item.message, said.code, said.type)
                return
            if isinstance(item, TaskCompleted):
                model = item.model
                answers = answers_of(item)
                last = max((i for i in range(len(answers)) if i not in ended), default=None)
                for index, a in enumerate(answers):
                    if index in ended:
                        continue
                    if index in started:
                        parts = _calls(a.tool_calls)
                    else:  # no text went out (a function call alone): its thoughts may have
                        parts = _parts(a, thoughts=thoughts and index not in thought)
                    refused = bool(a.refusal)
                    candidate = _candidate(index, parts or [{"text": ""}], a.finish_reason, refused=refused)
                    usage = item.usage if index == last else None
                    yield frame.data(_response(task, model, [candidate], usage, prompt=prompt))
                if last is None:  # every answer's end went out with its chunk: the usage on its own
                    yield frame.data(_response(task, model, [], item.usage))
                yield frame.end()
                return
            model = item.model or model
            prompt = item.usage or prompt
            index = item.choice
            if item.finish_reason is not None and not item.done:  # one of several answers ended
                ended.add(index)
                parts = _calls(item.tool_calls) or [{"text": item.refusal or ""}]
                refused = bool(item.refusal)
                candidate = _candidate(index, parts, item.finish_reason, refused=refused)
                yield frame.data(_response(task, model, [candidate], prompt=prompt))
            elif item.thinking and thoughts:
                thought.add(index)
                part = [{"text": item.thinking, "thought": True}]
                yield frame.data(_response(task, model, [_candidate(index, part)], prompt=prompt))
            elif item.delta:
                started.add(index)
                delta = [_candidate(index, [{"text": item.delta}])]
                yield frame.data(_response(task, model, delta, prompt=prompt))
    except TimedOut as exc:
        yield frame.error(504, str(exc), "task_timeout", "timeout")
    except Stopped:
        yield frame.error(503, Stopped.message, "gateway_stopping", "service_unavailable")
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


class _Frames:
    """Server-sent events (`data: {...}` and a blank line), or the elements of one JSON array."""

    def __init__(self, sse: bool, request_id: str) -> None:
        self.sse = sse
        self.request_id = request_id
        self.sent = False

    def data(self, body: dict[str, Any]) -> bytes:
        raw = orjson.dumps(body)
        if self.sse:
            return b"data: " + raw + b"\r\n\r\n"
        first, self.sent = not self.sent, True
        return (b"[" if first else b"\n,\r\n") + raw

    def error(self, status: int, message: str, code: str, type_: str) -> bytes:
        said = gemini_error(
            status=status, message=message, code=code, type_=type_, request_id=self.request_id
        )
        error = self.data({"error": said})
        return error if self.sse else error + self.end()

    def end(self) -> bytes:
        if self.sse:
            return b""
        return b"\n]" if self.sent else b"[]"


def model_json(info: AnthropicModelInfo, *, embeds: bool) -> dict[str, Any]:
    """A model as Gemini's Models API describes one (`models/{id}`, its methods, its context window)."""
    out: dict[str, Any] = {
        "name": f"models/{info.id}",
        "baseModelId": info.id,
        "version": "switchyard",
        "displayName": info.display_name,
        "description": info.display_name,
        "supportedGenerationMethods": ["embedContent", "batchEmbedContents"]
        if embeds
        else ["generateContent", "streamGenerateContent", "countTokens"],
    }
    if info.max_input_tokens is not None:
        out["inputTokenLimit"] = info.max_input_tokens
    return out
