"""What a Responses WebSocket connection sends (`responses_ws`): a response's request's answer as frames
(`Reply`), an HTTP error as OpenAI's `error` event, and a stream's events tagged with its `stream_id`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Message

from switchyard.gateway.errors import APIError

NOT_SHOWN = frozenset({"content-length", "content-type"})  # an HTTP error's headers an error event leaves out


class Reply:
    """What a response's request answers, as frames: its SSE events' data (each a JSON event, as is), or
    its HTTP error as an `error` event; `send` sends a frame, tagged with the response's stream."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], gone: asyncio.Event) -> None:
        self.send_frame = send
        self.gone = gone
        self.status = 0
        self.headers: dict[str, str] = {}
        self.pending = b""  # SSE not yet at an event's end, or an error's body

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", ())}
            return
        if message["type"] != "http.response.body":
            return
        self.pending += message.get("body", b"")
        if self.status != 200:
            return
        *events, self.pending = self.pending.split(b"\n\n")
        for event in events:
            data = next((line[6:] for line in event.split(b"\n") if line.startswith(b"data: ")), None)
            if data is not None:
                await self.send_frame(data)

    async def end(self) -> None:
        if self.status == 200 or self.gone.is_set():
            return
        await self.send_frame(orjson.dumps(error_event(self.status, self.pending, self.headers)))


def tagged(data: bytes, lane: str | None) -> bytes:
    """An event (a JSON object) with the `stream_id` of the stream it answers, as OpenAI tags them (an
    event of no stream, as it is)."""
    if lane is None or not data.startswith(b"{"):
        return data
    rest = data[1:]
    return b'{"stream_id":' + orjson.dumps(lane) + (b"," + rest if rest != b"}" else rest)


def error_event(status: int, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """An HTTP error (our body: `{"error": {message, type, param, code, request_id}}`) as OpenAI's
    WebSocket `error` event: the status, and the error with the headers it came with (its request id,
    `retry-after`, the rate limits)."""
    try:
        error = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        error = {"type": "api_error", "code": "internal_error", "message": "internal error", "param": None}
    if not isinstance(error, dict):
        error = {"type": "api_error", "code": "internal_error", "message": str(error)[:200], "param": None}
    shown = {k: v for k, v in headers.items() if k not in NOT_SHOWN}
    return {"type": "error", "status": status or 500, "error": {**error, "headers": shown}}


def api_error_event(exc: APIError, request_id: str) -> dict[str, Any]:
    """An error raised here (not by a request through the app) as the `error` event."""
    error = {
        "type": exc.type,
        "code": exc.code,
        "message": exc.message,
        "param": exc.param,
        "request_id": request_id,
        "headers": {"x-request-id": request_id, **exc.headers},
    }
    return {"type": "error", "status": exc.status, "error": error}
