"""The Responses WebSocket mode's frames from what a response's HTTP request answers (`responses_ws._Reply`):
its SSE events' JSON whatever the chunks they came in, and an HTTP error as OpenAI's `error` event."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from switchyard.gateway.responses_ws import RefusedHandshake, _error_event, _Reply


class Frames:
    """What a connection sends (the part of `Connection` a reply uses)."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[Any] = []

    async def _send(self, data: bytes) -> None:
        self.sent.append(orjson.loads(data))


async def _answer(status: int, headers: dict[str, str], *chunks: bytes) -> list[Any]:
    frames = Frames()
    reply = _Reply(frames)  # type: ignore[arg-type]
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    await reply.send({"type": "http.response.start", "status": status, "headers": raw})
    for n, chunk in enumerate(chunks):
        await reply.send({"type": "http.response.body", "body": chunk, "more_body": n < len(chunks) - 1})
    await reply.end()
    return frames.sent


async def test_events_are_sent_whole_whatever_the_chunks_they_came_in() -> None:
    sse = (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"a\\n\\nb",'
        b'"sequence_number":1}\n\n'
    )
    cut = sse.index(b"delta") + 3  # inside the second event
    sent = await _answer(200, {"content-type": "text/event-stream"}, sse[:cut], sse[cut:])
    assert [e["type"] for e in sent] == ["response.created", "response.output_text.delta"]
    assert sent[1]["delta"] == "a\n\nb"  # JSON escapes newlines: an event's end is never inside its data


async def test_an_http_error_is_an_error_event_with_its_status_and_headers() -> None:
    error = {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    body = orjson.dumps({"error": {**error, "request_id": "req_1"}})
    headers = {"content-type": "application/json", "x-request-id": "req_1", "retry-after": "3"}
    [event] = await _answer(429, headers, body[:10], body[10:])
    shown = {"x-request-id": "req_1", "retry-after": "3"}  # what a client reads of an HTTP error's headers
    assert event == {
        "type": "error",
        "status": 429,
        "error": {**error, "request_id": "req_1", "headers": shown},
    }
    assert _error_event(500, b"<html>", {})["error"]["code"] == "internal_error"  # not ours: still an event


def test_uvicorns_error_for_a_refused_handshake_is_said_as_what_happened() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, RefusedHandshake.UVICORN, (), None
    )
    assert RefusedHandshake().filter(record)
    assert (record.levelno, record.getMessage()) == (
        logging.INFO,
        "a WebSocket handshake was refused with an HTTP error response",
    )
    other = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", (), None
    )
    assert RefusedHandshake().filter(other) and other.levelno == logging.ERROR
