"""The Anthropic Messages API (`POST /v1/messages`) as a second face of the same pipeline: its request
becomes the pipeline's chat request, and the result is rendered as a Message, or streamed with the real
Anthropic SSE event sequence (message_start, content_block_start, ping, content_block_delta...,
content_block_stop, message_delta, message_stop)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.common.events import ChatMessage, TaskCompleted, TaskFailed, TaskSubmitted
from switchyard.common.streaming import Chunk
from switchyard.gateway.completions import chained
from switchyard.gateway.errors import InvalidRequest, RequestTooLarge
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.tasks import TimedOut

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class InputMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str | list[TextBlock]


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int = Field(ge=1, le=1_000_000)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop_sequences: list[str] | None = None


def _text(content: str | list[TextBlock]) -> str:
    if isinstance(content, str):
        return content
    unsupported = sorted({b.type for b in content if b.type != "text"})
    if unsupported:
        raise InvalidRequest(f"content blocks of type {unsupported} are not supported here", param="messages")
    return "\n".join(b.text or "" for b in content)


def model_name(model: str) -> str:
    """`auto` routes; a bare Anthropic name (`claude-...`) means the anthropic provider's model."""
    if model == "auto" or "/" in model:
        return model
    return f"anthropic/{model}"


def parse_request(body: bytes, *, max_prompt_chars: int) -> ChatCompletionRequest:
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object", code="invalid_json")
    try:
        raw = orjson.loads(body)
        parsed = MessagesRequest.model_validate(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", code="invalid_json") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        code = "missing_field" if err["type"] == "missing" else "invalid_value"
        raise InvalidRequest(f"{param or 'body'}: {err['msg']}", code=code, param=param) from exc
    messages = [ChatMessage(role="system", content=_text(parsed.system))] if parsed.system else []
    messages += [ChatMessage(role=m.role, content=_text(m.content)) for m in parsed.messages]
    chars = sum(len(m.text()) for m in messages)
    if chars > max_prompt_chars:
        raise RequestTooLarge(
            f"The prompt has {chars} characters; the limit is {max_prompt_chars}", code="prompt_too_large"
        )
    return ChatCompletionRequest(
        model=model_name(parsed.model),
        messages=messages,
        stream=parsed.stream,
        max_tokens=parsed.max_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stop_sequences,
    )


def message_json(task: TaskSubmitted, done: TaskCompleted) -> bytes:
    return orjson.dumps(
        {
            "id": f"msg_{task.task_id}",
            "type": "message",
            "role": "assistant",
            "model": done.model,
            "content": [{"type": "text", "text": done.content}],
            "stop_reason": STOP_REASONS.get(done.finish_reason, "end_turn"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": done.usage.prompt_tokens,
                "output_tokens": done.usage.completion_tokens,
            },
        }
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


def _error(message: str, type_: str = "api_error") -> bytes:
    return _event("error", {"error": {"type": type_, "message": message}})


async def stream_events(
    task: TaskSubmitted,
    head: list[Chunk | TaskCompleted],
    rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed],
    *,
    timeout_s: float,
    include_usage: bool = True,
) -> AsyncIterator[bytes]:
    """A break after text began ends with an `error` event and no `message_stop`: never a silent cut."""
    start = {
        "id": f"msg_{task.task_id}",
        "type": "message",
        "role": "assistant",
        "model": task.request.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield _event("message_start", {"message": start})
    yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    yield _event("ping", {})
    expected = 0
    sent = False
    try:
        async for item in chained(head, rest):
            if isinstance(item, Chunk):
                if item.seq != expected:
                    yield _error(f"stream gap: expected chunk {expected}, got {item.seq}")
                    return
                expected += 1
                if item.error is not None:
                    yield _error(item.error.message)
                    return
                if item.delta:
                    sent = True
                    yield _event(
                        "content_block_delta",
                        {"index": 0, "delta": {"type": "text_delta", "text": item.delta}},
                    )
                continue
            if isinstance(item, TaskFailed):
                yield _error(item.error_message)
                return
            if not sent and item.content:
                yield _event(
                    "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": item.content}}
                )
            yield _event("content_block_stop", {"index": 0})
            delta = {"stop_reason": STOP_REASONS.get(item.finish_reason, "end_turn"), "stop_sequence": None}
            usage = {"input_tokens": item.usage.prompt_tokens, "output_tokens": item.usage.completion_tokens}
            yield _event("message_delta", {"delta": delta, "usage": usage})
            yield _event("message_stop", {})
            return
    except TimedOut:
        yield _error(f"The task did not finish within {timeout_s:g} s", "timeout_error")
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
