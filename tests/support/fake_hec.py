"""A local Splunk HTTP Event Collector for tests: the documented endpoints, status codes and ack flow.

- POST /services/collector/event (and /event/1.0): `Authorization: Splunk <token>` (401 code 2 without it,
  401 code 3 when malformed, 403 code 4 for a wrong token); with indexer acknowledgement on, a channel
  (`X-Splunk-Request-Channel` or `?channel=`) is required (400 code 10 / 11); the body is one or more JSON
  event objects (400 code 5 no data, 6 invalid data format, 12 event field required, 13 event blank);
  413 over `max_content_length`; 503 code 9 when busy; 200 `{"text": "Success", "code": 0, "ackId": n}`.
- POST /services/collector/ack: `{"acks": [n, ...]}` -> `{"acks": {"n": true|false}}` on the channel the
  events were sent on; 400 code 14 when acknowledgement is disabled.
- GET /services/collector/health: 200 code 17, or 503 code 18 when marked unhealthy.

Faults for tests: `busy_next` answers the next N event posts with 503; `lose_next` accepts the next N
batches and hands out ack ids that never turn true, and never indexes them (an indexer that crashed).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from switchyard.cli.processes import free_port


@dataclass
class HecState:
    token: str
    ack_enabled: bool = True
    max_content_length: int = 1_000_000
    busy_next: int = 0
    lose_next: int = 0
    healthy: bool = True
    indexed: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    statuses: list[int] = field(default_factory=list)
    _acks: dict[str, dict[int, bool]] = field(default_factory=dict)
    _next_ack: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _reply(status: int, text: str, code: int, **extra: Any) -> JSONResponse:
    return JSONResponse({"text": text, "code": code, **extra}, status_code=status)


def _auth(state: HecState, request: Request) -> JSONResponse | None:
    header = request.headers.get("authorization")
    if header is None:
        return _reply(401, "Token is required", 2)
    scheme, _, token = header.partition(" ")
    if scheme != "Splunk" or not token:
        return _reply(401, "Invalid authorization", 3)
    if token != state.token:
        return _reply(403, "Invalid token", 4)
    return None


def _channel(request: Request) -> tuple[str | None, JSONResponse | None]:
    channel = request.headers.get("x-splunk-request-channel") or request.query_params.get("channel")
    if channel is None:
        return None, _reply(400, "Data channel is missing", 10)
    try:
        uuid.UUID(channel)
    except ValueError:
        return None, _reply(400, "Invalid data channel", 11)
    return channel, None


def _events(body: bytes) -> tuple[list[dict[str, Any]], JSONResponse | None]:
    decoder_input = body.decode("utf-8", errors="strict")
    events: list[dict[str, Any]] = []
    i, n = 0, len(decoder_input)
    decoder = json.JSONDecoder()
    while i < n:
        while i < n and decoder_input[i].isspace():
            i += 1
        if i >= n:
            break
        try:
            obj, i = decoder.raw_decode(decoder_input, i)
        except ValueError:
            return [], _reply(400, "Invalid data format", 6, **{"invalid-event-number": len(events)})
        if not isinstance(obj, dict) or "event" not in obj:
            return [], _reply(400, "Event field is required", 12, **{"invalid-event-number": len(events)})
        if obj["event"] in ("", None):
            return [], _reply(400, "Event field cannot be blank", 13, **{"invalid-event-number": len(events)})
        events.append(obj)
    if not events:
        return [], _reply(400, "No data", 5)
    return events, None


def build_app(state: HecState) -> Starlette:
    async def event(request: Request) -> JSONResponse:
        response = await _event(request)
        state.statuses.append(response.status_code)
        return response

    async def _event(request: Request) -> JSONResponse:
        state.posts += 1
        denied = _auth(state, request)
        if denied is not None:
            return denied
        channel = None
        if state.ack_enabled:
            channel, bad = _channel(request)
            if bad is not None:
                return bad
        body = await request.body()
        if len(body) > state.max_content_length:
            return _reply(413, "Content too large", 27)
        with state.lock:
            if state.busy_next > 0:
                state.busy_next -= 1
                return _reply(503, "Server is busy", 9)
        events, bad = _events(body)
        if bad is not None:
            return bad
        with state.lock:
            lost = state.lose_next > 0
            if lost:
                state.lose_next -= 1
            else:
                state.indexed.extend(events)
            if channel is None:
                return _reply(200, "Success", 0)
            ack_id = state._next_ack.get(channel, 0)
            state._next_ack[channel] = ack_id + 1
            state._acks.setdefault(channel, {})[ack_id] = not lost
        return _reply(200, "Success", 0, ackId=ack_id)

    async def ack(request: Request) -> JSONResponse:
        denied = _auth(state, request)
        if denied is not None:
            return denied
        if not state.ack_enabled:
            return _reply(400, "ACK is disabled", 14)
        channel, bad = _channel(request)
        if bad is not None:
            return bad
        try:
            wanted = orjson.loads(await request.body())["acks"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _reply(400, "Invalid data format", 6)
        known = state._acks.get(channel or "", {})
        return JSONResponse({"acks": {str(a): known.get(a, False) for a in wanted}})

    async def health(request: Request) -> JSONResponse:
        if state.healthy:
            return _reply(200, "HEC is healthy", 17)
        return _reply(503, "HEC is unhealthy, queues are full", 18)

    return Starlette(
        routes=[
            Route("/services/collector/event", event, methods=["POST"]),
            Route("/services/collector/event/1.0", event, methods=["POST"]),
            Route("/services/collector/ack", ack, methods=["POST"]),
            Route("/services/collector/health", health, methods=["GET"]),
        ]
    )


class FakeHec:
    """Runs the collector on 127.0.0.1 in a background thread."""

    def __init__(self, token: str = "0a1b2c3d-test-token", **options: Any) -> None:
        self.state = HecState(token=token, **options)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(build_app(self.state), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeHec:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake HEC did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
