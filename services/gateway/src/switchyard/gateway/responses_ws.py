"""OpenAI's Responses API in WebSocket mode: `wss://.../v1/responses`, one connection for a whole agent loop.
The client sends `response.create` events (a `POST /v1/responses` body with its `type`, less `stream` and
`background`) and gets the events a streamed response sends, each a JSON text frame; a continuation
sends only its new input items and the `previous_response_id` it continues, which is found in the
connection's memory even when it was not stored (`stored_responses/recent.py`).

Each `response.create` is served by the HTTP path itself, whole: the event becomes a `POST /v1/responses`
request with the handshake's headers (its key, priority, timeouts), run through the app as any request
(its own request id, authentication, key policy, limits, budget, guardrails, billing and audit), its SSE
events sent on as frames, and its HTTP error as an `error` event (`status`, and `error` with our type,
code, message, param, request id and headers). A client that goes away is, to that request, a client
that disconnected: its task is cancelled. Responses run one after another, in the order sent (OpenAI
runs a connection's responses in order; several at once need `stream_id`, which is not served).

Bounds: a key's connections on a replica (`sockets`), a connection's lifetime and idle time, the size of
the response it keeps (`recent`) and of a frame it reads (over SWITCHYARD_MAX_BODY_BYTES: the request's
413 as an error event; over twice that, uvicorn closes the connection with 1009). When the gateway stops,
a connection ends the response under way within the stop grace (`stopping.Server`), then closes with
1012 (service restart), on which the SDKs reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.requests import Request
from starlette.types import Message, Scope
from starlette.websockets import WebSocketDisconnect

from switchyard.common.ids import new_id
from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors import APIError, RequestTooLarge, error_response
from switchyard.gateway.state import Gateway
from switchyard.gateway.stored_responses.recent import RECENT, Recent

log = logging.getLogger(__name__)

router = APIRouter()

PATH = "/v1/responses"
QUEUED = 16  # frames read ahead of the response being answered (OpenAI queues creates; past this, TCP waits)
TRANSPORT = frozenset({"type", "stream", "stream_options"})  # an event's fields that are not the body's
# the handshake's headers a response's request does not repeat (its own body's are set)
HANDSHAKE_ONLY = frozenset(
    {
        b"connection",
        b"upgrade",
        b"content-length",
        b"content-type",
        b"transfer-encoding",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)
NOT_SHOWN = frozenset({"content-length", "content-type"})  # an HTTP error's headers an error event leaves out


@router.websocket(PATH)
async def responses_socket(websocket: WebSocket) -> None:
    gw: Gateway = websocket.app.state.gateway
    request_id = f"req_{new_id()[:24]}"
    handshake = Request(
        {**websocket.scope, "type": "http", "method": "GET", "state": {"request_id": request_id}}
    )
    try:
        principal = await authenticate(handshake, gw.verifier)
        gw.sockets.take(principal.api_key_id, limit=gw.settings.responses_ws_per_key)
    except APIError as exc:
        await _refuse(websocket, error_response(handshake, exc), exc)
        return
    try:
        await websocket.accept(headers=[(b"x-request-id", request_id.encode())])
        recent = Recent(principal.tenant_id, max_bytes=gw.settings.responses_ws_kept_bytes)
        await Connection(websocket, gw, request_id, recent).run()
    finally:
        gw.sockets.give_back(principal.api_key_id)


async def _refuse(websocket: WebSocket, response: Any, exc: APIError) -> None:
    """The handshake answered as an HTTP request would be (401 with our error body) where the server can
    (ASGI's denial response), else closed with 1008 (policy violation)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008, reason=exc.message[:120])


class Connection:
    """One accepted connection: a reader that takes frames in (and hears the client go), and the frames
    answered in order, each `response.create` a request through the app."""

    def __init__(self, websocket: WebSocket, gw: Gateway, request_id: str, recent: Recent) -> None:
        self.ws = websocket
        self.app = websocket.scope["app"]
        self.request_id = request_id
        self.recent = recent
        self.frames: asyncio.Queue[str | None] = asyncio.Queue(QUEUED)  # None: `gone` or `stopping`
        self.gone = asyncio.Event()
        self.stopping = False  # the gateway is stopping: end the response under way, then close
        self.stop = gw.stop
        self.settings = gw.settings
        loop = asyncio.get_running_loop()
        self.ends_at = loop.time() + gw.settings.responses_ws_max_s

    async def run(self) -> None:
        RECENT.set(self.recent)  # this task's, and its requests': `chain.load` reads it
        reader = asyncio.create_task(self._read())
        self.stop.on_begin(self._stopping)
        try:
            await self._answer()
        finally:
            self.stop.forget_begin(self._stopping)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.recent.latest = None

    def _stopping(self) -> None:
        self.stopping = True
        with contextlib.suppress(asyncio.QueueFull):  # full: a response is under way, and looked after
            self.frames.put_nowait(None)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                raw = message.get("bytes")
                await self.frames.put(text if text is not None else (raw or b"").decode("utf-8", "replace"))
        finally:
            self.gone.set()
            with contextlib.suppress(asyncio.QueueFull):
                self.frames.put_nowait(None)

    async def _answer(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.gone.is_set():
            frame: str | None = None
            idle = False
            try:
                async with asyncio.timeout_at(
                    min(self.ends_at, loop.time() + self.settings.responses_ws_idle_s)
                ):
                    frame = await self.frames.get()
            except TimeoutError:
                idle = True  # the lifetime or the idle bound ended while the connection waited
            if self.gone.is_set():
                return
            if self.stopping:
                await self._close(1012, "the gateway is stopping")  # what is left unread is not answered
                return
            if loop.time() >= self.ends_at:
                await self._close_at_lifetime()
                return
            if idle:
                await self._close_idle()
                return
            if frame is not None:
                await self._frame(frame)

    async def _frame(self, frame: str) -> None:
        limit = self.settings.max_body_bytes
        if len(frame) > limit:  # characters, each at least a byte: the request's body would be refused
            error = RequestTooLarge(
                f"Request body of at least {len(frame)} bytes exceeds the limit of {limit} bytes"
            )
            await self._error(error.status, error.message, code=error.code, type_=error.type)
            return
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            await self._error(400, f"the frame is not valid JSON: {exc}", code="invalid_json")
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "response.create":
            await self._create(event)
        elif kind == "response.steer":
            await self._send(_steer_refused(event))
        else:
            shown = repr(kind)[:80] if isinstance(event, dict) else "a JSON value that is not an object"
            await self._error(
                400,
                f"unknown event {shown}: a client event is a JSON object whose `type` is response.create "
                "(response.steer is answered response.steer.failed: steering is not served)",
                code="invalid_event",
                param="type",
            )

    async def _create(self, event: dict[str, Any]) -> None:
        lane = event.get("stream_id")
        if lane is not None:
            await self._error(
                400,
                "stream_id: several responses at once on one connection (WebSocket multiplexing) are not "
                "served here: send responses one after another on a connection (they run in order), or "
                "open another connection",
                code="unsupported_parameter",
                param="stream_id",
                stream_id=lane if isinstance(lane, str) else None,
            )
            return
        if event.get("generate") is False:
            await self._error(
                400,
                "generate: warm-up responses (`generate: false`) are not served here: send the turn "
                "itself, which is answered",
                code="unsupported_parameter",
                param="generate",
            )
            return
        body = {k: v for k, v in event.items() if k not in TRANSPORT}
        await self._respond(orjson.dumps({**body, "stream": True}))

    async def _respond(self, body: bytes) -> None:
        """`body` as `POST /v1/responses` through the app: its events sent on, or its error as one."""
        reply = _Reply(self)
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await self.gone.wait()  # the body is read: what the request hears next is its client going
            return {"type": "http.disconnect"}

        try:
            await self.app(self._scope(len(body)), receive, reply.send)
        except Exception:  # the app answered it (its handler for errors answers, then raises on)
            log.debug("a WebSocket response's request raised after its answer", exc_info=True)
        await reply.end()

    def _scope(self, size: int) -> Scope:
        scope = self.ws.scope
        headers = [(k, v) for k, v in scope["headers"] if k not in HANDSHAKE_ONLY]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(size).encode())]
        return {
            "type": "http",
            # 2.3: the app listens for the client going (`http.disconnect`), as it does on HTTP/1.1
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https" if scope.get("scheme") == "wss" else "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "root_path": scope.get("root_path", ""),
            "query_string": b"",
            "headers": headers,
            "client": scope.get("client"),
            "server": scope.get("server"),
            "state": {},
        }

    async def _close_at_lifetime(self) -> None:
        await self._error(
            400,
            "this connection reached its lifetime (SWITCHYARD_RESPONSES_WS_MAX_S); open a new one (a "
            "response not stored is continued only on the connection that answered it: send the "
            "conversation in `input`)",
            code="websocket_connection_limit_reached",
        )
        await self._close(1000, "connection lifetime reached")

    async def _close_idle(self) -> None:
        await self._error(
            400,
            f"this connection sent nothing for {self.settings.responses_ws_idle_s:g} s with no response "
            "under way (SWITCHYARD_RESPONSES_WS_IDLE_S); open a new one (a response not stored is continued "
            "only on the connection that answered it: send the conversation in `input`)",
            code="websocket_idle_timeout",
        )
        await self._close(1000, "idle")

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.ws.close(code=code, reason=reason)

    async def _error(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        stream_id: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        """An error of the connection's own (a frame it cannot take), as OpenAI's `error` event."""
        error = {
            "type": type_,
            "code": code,
            "message": message,
            "param": param,
            "request_id": self.request_id,
            "headers": {"x-request-id": self.request_id},
        }
        lane = {"stream_id": stream_id} if stream_id is not None else {}
        await self._send(orjson.dumps({"type": "error", "status": status, "error": error, **lane}))

    async def _send(self, data: bytes) -> None:
        if self.gone.is_set():
            return
        try:
            await self.ws.send_text(data.decode())
        except (RuntimeError, OSError, WebSocketDisconnect):
            self.gone.set()


class _Reply:
    """What a response's request answers, as frames: its SSE events' data (each a JSON event, as is), or
    its HTTP error as an `error` event."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
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
                await self.connection._send(data)

    async def end(self) -> None:
        if self.status == 200 or self.connection.gone.is_set():
            return
        await self.connection._send(orjson.dumps(_error_event(self.status, self.pending, self.headers)))


def _error_event(status: int, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
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


class RefusedHandshake(logging.Filter):
    """uvicorn (its websockets-sansio protocol, 0.54) logs a handshake answered with an HTTP response (a
    refused key's 401: `_refuse`) as an error, "ASGI callable returned without completing handshake",
    although the response went out: one line at info level says what happened instead."""

    UVICORN = "ASGI callable returned without completing handshake."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.UVICORN:
            record.msg = "a WebSocket handshake was refused with an HTTP error response"
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _steer_refused(event: dict[str, Any]) -> bytes:
    """`response.steer` answered as OpenAI answers steering it cannot take: `response.steer.failed`
    with the input given back, so the client can send it in its next `response.create`."""
    steer = {"input": event.get("input"), "previous_response_id": event.get("previous_response_id")}
    error = {
        "type": "invalid_request_error",
        "code": "steering_not_supported",
        "message": "steering (`response.steer`) is not served here: send the input in the next "
        "response.create, with the previous_response_id it continues",
    }
    failed = {"type": "response.steer.failed", "sequence_number": 0, "error": error, "steer": steer}
    return orjson.dumps(failed)
