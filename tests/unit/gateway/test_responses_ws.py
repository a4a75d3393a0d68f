"""The Responses WebSocket mode's frames from what a response's HTTP request answers
(`responses_ws_events.Reply`): its SSE events' JSON whatever the chunks they came in, an HTTP error as
OpenAI's `error` event, a stream's events tagged with its `stream_id`; and what a connection keeps
(`recent.Memory`): each stream's latest response, within its bounds."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import orjson

from switchyard.gateway import bounds
from switchyard.gateway.responses_steer import Steer, accept, with_queued
from switchyard.gateway.responses_ws import Connection
from switchyard.gateway.responses_ws_events import Reply, error_event, tagged
from switchyard.gateway.sockets import RefusedHandshake
from switchyard.gateway.stored_responses.recent import Memory
from switchyard.gateway.stored_responses.store import StoredResponse


class Frames:
    """What a connection sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, data: bytes) -> None:
        self.sent.append(orjson.loads(data))


async def _answer(status: int, headers: dict[str, str], *chunks: bytes) -> list[Any]:
    frames = Frames()
    reply = Reply(frames.send, asyncio.Event())
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
    assert error_event(500, b"<html>", {})["error"]["code"] == "internal_error"  # not ours: still an event


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


def test_a_streams_events_say_its_stream_id() -> None:
    assert orjson.loads(tagged(b'{"type":"response.created","n":1}', 'a"b')) == {
        "stream_id": 'a"b',
        "type": "response.created",
        "n": 1,
    }
    assert orjson.loads(tagged(b"{}", "s")) == {"stream_id": "s"}
    assert tagged(b'{"type":"x"}', None) == b'{"type":"x"}'  # a response of no stream: as it is


def _record(response_id: str, text: str = "") -> StoredResponse:
    return StoredResponse(response={"id": response_id, "output": []}, input=[{"text": text}])


def test_a_connection_keeps_each_streams_latest_within_its_bounds() -> None:
    memory = Memory("org", max_bytes=200, max_lanes=2)
    memory.keep(None, _record("r1"))
    memory.keep("a", _record("r2"))
    memory.keep(None, _record("r3"))  # the stream's latest replaces its earlier one
    assert (memory.get("org", "r1"), memory.get("org", "r2").id, memory.get("org", "r3").id) == (  # type: ignore[union-attr]
        None,
        "r2",
        "r3",
    )
    assert memory.get("other", "r3") is None  # another organisation's request finds nothing
    memory.keep("b", _record("r4"))  # a third stream: the least recently answered goes
    assert memory.get("org", "r2") is None and memory.get("org", "r4") is not None
    memory.keep("b", _record("r5", "x" * 300))  # too large: not kept, and said so
    assert memory.get("org", "r5") is None and memory.get("org", "r4") is None
    assert "SWITCHYARD_RESPONSES_WS_KEPT_BYTES" in memory.forgotten("r5")
    assert memory.forgotten("r3") == ""
    memory.keep("c", _record("r6", "y" * 150))  # together over 200 bytes: the oldest goes
    assert memory.get("org", "r3") is None and memory.get("org", "r6") is not None


def test_steering_takes_user_messages_and_follows_the_outputs_a_continuation_opens_with() -> None:
    steer = accept({"type": "response.steer", "previous_response_id": "resp_1", "input": "Shorter."})
    assert isinstance(steer, Steer) and steer.items[0]["role"] == "user"
    for bad in (
        {"previous_response_id": "resp_1", "input": ""},
        {"previous_response_id": "resp_1", "input": [{"role": "assistant", "content": "x"}]},
        {"previous_response_id": "resp_1", "input": [{"role": "user", "content": [{"type": "output_text"}]}]},
        {"previous_response_id": "resp_1", "input": "x", "stream_id": "s"},  # the target says its stream
        {"input": "x"},
    ):
        assert isinstance(accept({"type": "response.steer", **bad}), str)
    output = {"type": "function_call_output", "call_id": "c1", "output": "sunny"}
    create = {"type": "response.create", "input": [output, {"role": "user", "content": "and?"}]}
    assert [i.get("type") for i in with_queued(create, [steer])["input"]] == [
        "function_call_output",
        "message",  # the queued input
        None,
    ]
    assert with_queued({"input": "Go"}, [steer])["input"][1]["content"] == "Go"


class Socket:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(orjson.loads(text))


def _connection() -> Connection:
    """A connection's frame reader, before any response is under way."""
    connection = Connection.__new__(Connection)
    connection.ws, connection.gone, connection.request_id = Socket(), asyncio.Event(), "req_1"  # type: ignore[assignment]
    connection.settings = SimpleNamespace(max_body_bytes=1 << 20, responses_ws_streams=4)  # type: ignore[assignment]
    connection.lanes, connection.held, connection.answered = {}, {}, {}
    return connection


async def test_a_frame_too_deep_to_be_written_again_is_a_400_event() -> None:
    """orjson reads 1,024 levels and writes ~254: a frame nested 300 deep was read, then writing it again (a
    steer's size, a steer given back, a response.create's request) raised orjson's TypeError, which ended
    the connection as an unhandled error."""
    deep = '{"a":' * 300 + "{}" + "}" * 300
    part = '{"type":"input_text","text":"x","z":' + deep + "}"
    steer = '{"type":"response.steer","previous_response_id":"resp_1","input":[{"role":"user","content":['
    tool = '{"type":"function","name":"f","parameters":' + deep + "}"
    create = '{"type":"response.create","stream_id":"s","model":"auto","input":"hi","tools":[' + tool + "]}"
    connection = _connection()
    for frame in (steer + part + "]}]}", create):
        await connection._frame(frame)
    first, second = connection.ws.sent  # type: ignore[attr-defined]
    assert (first["type"], first["status"], first["error"]["code"]) == ("error", 400, bounds.NESTING)
    assert (second["error"]["code"], second.get("stream_id")) == (bounds.NESTING, "s")
