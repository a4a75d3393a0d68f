"""A local server speaking Anthropic's Messages protocol, for tests: the message JSON, the SSE event
sequence (message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta, message_stop), and the real error bodies and status codes. The model name picks the
behaviour, as in `fake_openai` (error-<status>: 401, 404, 429 + Retry-After, 500, 503, 529;
error-context, error-policy, flaky-<n>, limited-<n>, slow-<seconds>, break, stream-error, garbage;
tool-call with tools: a `tool_use` of the first tool, input {"city": "Paris"}, streamed as
`input_json_delta`s).

Requests without the `x-api-key` the server was given get 401; without `anthropic-version`, or without
`max_tokens`, 400 — as the real API answers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.fake_openai import (
    RETRY_AFTER_S,
    BackgroundServer,
    ConnectionDropped,
    Scenarios,
    answer_text,
    flaky_failures,
    limited_calls,
    slow_seconds,
    sse,
    words,
)

__all__ = ["BackgroundServer", "FakeAnthropic"]

ERRORS: dict[str, tuple[int, str, str]] = {
    "401": (401, "authentication_error", "invalid x-api-key"),
    "404": (404, "not_found_error", "model: error-404"),
    "429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "500": (500, "api_error", "Internal server error"),
    "503": (503, "api_error", "Service unavailable"),
    "529": (529, "overloaded_error", "Overloaded"),
    "context": (400, "invalid_request_error", "prompt is too long: 210412 tokens > 200000 maximum"),
    "policy": (400, "invalid_request_error", "Output blocked by content filtering policy"),
}


def error_body(err_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": err_type, "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def error_response(name: str) -> Response:
    status, err_type, message = ERRORS[name]
    headers = {"retry-after": str(RETRY_AFTER_S)} if status == 429 else {}
    return JSONResponse(error_body(err_type, message), status_code=status, headers=headers)


def bad_request(message: str) -> Response:
    return JSONResponse(error_body("invalid_request_error", message), status_code=400)


def stopped_at(text: str, stops: list[str] | None) -> tuple[str, str | None]:
    """As Anthropic stops: before the first of the request's stop sequences to appear, which it names
    (`stop_reason: stop_sequence`) and leaves out of the text."""
    hits = [(text.find(s), s) for s in stops or [] if s and s in text]
    if not hits:
        return text, None
    at, first = min(hits)
    return text[:at], first


class FakeAnthropic:
    def __init__(self, *, api_key: str = "sk-ant-test-fake-anthropic-key") -> None:
        self.api_key = api_key
        self.scenarios = Scenarios()
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    @property
    def requests(self) -> list[Any]:
        return self.scenarios.requests

    async def messages(self, request: Request) -> Response:
        body, model, n = await self.scenarios.record(request)
        if request.headers.get("x-api-key") != self.api_key:
            return error_response("401")
        if not request.headers.get("anthropic-version"):
            return bad_request("anthropic-version: header is required")
        if "max_tokens" not in body:
            return bad_request("max_tokens: Field required")
        marks = cache_marks(body)
        if len(marks) > 4:
            return bad_request(
                f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}."
            )
        if any(m.get("type") != "ephemeral" for m in marks):
            return bad_request("cache_control.type: Input should be 'ephemeral'")
        if model.startswith("error-"):
            return error_response(model.removeprefix("error-"))
        if n <= flaky_failures(model):
            return error_response("529")
        if n <= limited_calls(model):
            return error_response("429")
        await asyncio.sleep(slow_seconds(model))
        text, hit = stopped_at(answer_text(body), body.get("stop_sequences"))
        if model == "tool-call" and body.get("tools"):
            return self._tool_use(body)
        if body.get("stream"):
            return StreamingResponse(self._stream(model, text, hit), media_type="text/event-stream")
        if model == "garbage":
            return Response(
                b"upstream connect error or disconnect/reset before headers", media_type="application/json"
            )
        message = self._message(model, text, hit)
        if model == "break":
            raw = orjson.dumps(message)
            return StreamingResponse(_dropping(raw), media_type="application/json")
        return JSONResponse(message)

    def _message(self, model: str, text: str, hit: str | None = None) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "stop_sequence" if hit else "end_turn",
            "stop_sequence": hit,
            "usage": {**input_usage(model), "output_tokens": len(words(text))},
        }

    def _tool_use(self, body: dict[str, Any]) -> Response:
        name = (body.get("tools") or [{}])[0].get("name", "unknown")
        block = {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {"city": "Paris"}}
        message = self._message("tool-call", "")
        message.update(content=[block], stop_reason="tool_use")
        if not body.get("stream"):
            return JSONResponse(message)

        async def events() -> AsyncIterator[bytes]:
            start = {**message, "content": [], "stop_reason": None}
            yield sse({"type": "message_start", "message": start}, "message_start")
            empty = {**block, "input": {}}
            yield sse(
                {"type": "content_block_start", "index": 0, "content_block": empty}, "content_block_start"
            )
            for piece in ('{"city"', ': "Paris"}'):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
            yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            delta = {"stop_reason": "tool_use", "stop_sequence": None}
            yield sse(
                {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 7}}, "message_delta"
            )
            yield sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _stream(self, model: str, text: str, hit: str | None) -> AsyncIterator[bytes]:
        start = self._message(model, "")
        start.update(content=[], stop_reason=None, usage={**input_usage(model), "output_tokens": 1})
        yield sse({"type": "message_start", "message": start}, "message_start")
        yield sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        )
        yield sse({"type": "ping"}, "ping")
        if model == "garbage":
            yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
            return
        for i, word in enumerate(words(text)):
            if i == 2 and model == "break":
                raise ConnectionDropped
            if i == 2 and model == "stream-error":
                yield sse(error_body("overloaded_error", "Overloaded"), "error")
                return
            yield sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
                "content_block_delta",
            )
            await asyncio.sleep(0)
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence" if hit else "end_turn", "stop_sequence": hit},
                "usage": {"output_tokens": len(words(text))},
            },
            "message_delta",
        )
        yield sse({"type": "message_stop"}, "message_stop")


def cache_marks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `cache_control` breakpoints of a request: on system blocks, content blocks and tools."""
    blocks = [b for b in body.get("system") or [] if isinstance(b, dict)] + list(body.get("tools") or [])
    for message in body.get("messages") or []:
        if isinstance(message.get("content"), list):
            blocks += message["content"]
    return [b["cache_control"] for b in blocks if isinstance(b, dict) and "cache_control" in b]


def input_usage(model: str) -> dict[str, int]:
    """Anthropic counts cache reads and writes apart from `input_tokens`; `cached` reads 1,500 prompt
    tokens from the cache and writes 300 (a stream says so in `message_start` only)."""
    read, written = (1500, 300) if model == "cached" else (0, 0)
    return {"input_tokens": 12, "cache_creation_input_tokens": written, "cache_read_input_tokens": read}


async def _dropping(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise ConnectionDropped
