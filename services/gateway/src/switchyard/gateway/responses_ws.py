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
that disconnected: its task is cancelled. `generate: false` prepares a response without running one
(`responses_warmup`); `response.steer` queues input for the response that continues the one under way
(`responses_steer`).

Streams (`stream_id`, OpenAI's WebSocket multiplexing): the responses of one stream run one after another,
in the order sent; those of different streams at once, each event tagged with its `stream_id`; the
responses sent without one are a stream of their own. `previous_response_id` says which response a turn
continues, on its stream or on another (a fork). At most SWITCHYARD_RESPONSES_WS_STREAMS streams run at
once; a response.create of another stream past it is refused (`error`, code `too_many_streams`).

Bounds: a key's connections on a replica (`sockets`), a connection's lifetime and idle time, what it keeps
(`recent`) and the size of a frame it reads (over SWITCHYARD_MAX_BODY_BYTES: the request's 413 as an error
event; over twice that, uvicorn closes the connection with 1009). When the gateway stops, a connection
ends the responses under way within the stop grace (`stopping.Server`), then closes with 1012 (service
restart), on which the SDKs reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.requests import Request
from starlette.types import Message, Scope
from starlette.websockets import WebSocketDisconnect

from switchyard.common.ids import new_id
from switchyard.gateway import bounds, responses_warmup, sockets
from switchyard.gateway import responses_steer as steering
from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors import APIError, RequestTooLarge, error_response
from switchyard.gateway.responses_ws_events import Reply, api_error_event, tagged
from switchyard.gateway.state import Gateway
from switchyard.gateway.stored_responses.recent import RECENT, Memory, Recent

log = logging.getLogger(__name__)

ENDED = (b'{"type":"response.completed"', b'{"type":"response.incomplete"', b'{"type":"response.failed"')
router = APIRouter()

PATH = "/v1/responses"
ANSWERED = 64  # responses that ended on a connection whose stream a late response.steer is told
QUEUED = 16  # response.create events taken ahead of those running (OpenAI queues them; past this, TCP waits)
TRANSPORT = frozenset({"type", "stream", "stream_options", "stream_id", "generate"})  # not the body's


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
        await sockets.refuse(websocket, error_response(handshake, exc), exc)
        return
    try:
        await websocket.accept(headers=[(b"x-request-id", request_id.encode())])
        settings = gw.settings
        memory = Memory(
            principal.tenant_id,
            max_bytes=settings.responses_ws_kept_bytes,
            max_lanes=settings.responses_ws_streams,
        )
        await Connection(websocket, gw, request_id, memory, handshake).run()
    finally:
        gw.sockets.give_back(principal.api_key_id)


@dataclass
class Lane:
    """A stream's `response.create` events not yet answered, and the task answering them (None: idle);
    the response under way (its id once created, its event) and the input steering it (`responses_steer`)."""

    name: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None
    current: str | None = None
    create: dict[str, Any] | None = None
    ended: dict[str, Any] | None = None  # the response under way as it ended
    steers: list[steering.Steer] = field(default_factory=list)  # accepted for the response under way
    committing: list[steering.Steer] = field(default_factory=list)  # given to the successor being created


class Connection:
    """One accepted connection: a reader that takes frames in (and hears the client go), the frames read
    in order, and each stream's responses answered in order (`Lane`), each a request through the app."""

    def __init__(
        self, websocket: WebSocket, gw: Gateway, request_id: str, memory: Memory, handshake: Request
    ) -> None:
        self.ws = websocket
        self.app = websocket.scope["app"]
        self.gw = gw
        self.request_id = request_id
        self.memory = memory
        self.handshake = handshake
        self.frames: asyncio.Queue[str | None] = asyncio.Queue(QUEUED)  # None: look at the state
        self.room = asyncio.Semaphore(QUEUED)  # response.create events taken, not yet answered
        self.lanes: dict[str | None, Lane] = {}  # those with events to answer
        self.gone = asyncio.Event()
        self.stopping = False  # the gateway is stopping: end the responses under way, then close
        self.closing = False  # the connection ends once the responses under way have
        # steering input of responses that wait for their calls' outputs, by response id, oldest first
        self.held: dict[str, tuple[str | None, list[steering.Steer]]] = {}
        self.answered: dict[str, str | None] = {}  # the latest responses that ended here, and their streams
        self.settings = gw.settings
        loop = asyncio.get_running_loop()
        self.ends_at = loop.time() + gw.settings.responses_ws_max_s

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        self.gw.stop.on_begin(self._stopping)
        try:
            ending = await self._answer()
            self.closing = True
            for lane in self.lanes.values():
                lane.pending.clear()  # what was not begun is not answered
            await asyncio.gather(*(lane.worker for lane in self.lanes.values() if lane.worker is not None))
            await ending()
        finally:
            self.gw.stop.forget_begin(self._stopping)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.memory.clear()

    def _stopping(self) -> None:
        self.stopping = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # full: frames wait, and the loop looks after each
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
            self._wake()

    async def _answer(self) -> Callable[[], Awaitable[None]]:
        """Reads frames until the connection ends; returns how it ends (the close, run once the responses
        under way have ended)."""
        loop = asyncio.get_running_loop()
        while True:
            frame: str | None = None
            idle = False
            busy = any(lane.worker is not None for lane in self.lanes.values())
            deadline = (
                self.ends_at if busy else min(self.ends_at, loop.time() + self.settings.responses_ws_idle_s)
            )
            try:
                async with asyncio.timeout_at(deadline):
                    frame = await self.frames.get()
            except TimeoutError:
                idle = not busy  # else the lifetime ended
            if self.gone.is_set():
                return _nothing
            if self.stopping:
                return self._close_stopping
            if loop.time() >= self.ends_at:
                return self._close_at_lifetime
            if idle:
                return self._close_idle
            if frame is not None:
                await self._frame(frame)

    async def _frame(self, frame: str) -> None:
        limit = self.settings.max_body_bytes
        if len(frame) > limit:  # characters, each at least a byte: the request's body would be refused
            size = len(frame)
            await self._raise(
                RequestTooLarge(f"Request body of at least {size} bytes exceeds the limit of {limit} bytes")
            )
            return
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            await self._error(400, f"the frame is not valid JSON: {exc}", code="invalid_json")
            return
        try:  # what is read is written again (a request's body; a steer's input given back, a level down)
            orjson.dumps({"steer": event})
        except orjson.JSONEncodeError as exc:  # orjson reads 1,024 levels, writes ~254
            refused = bounds.too_deep(None, exc)
            lane = event.get("stream_id") if isinstance(event, dict) else None  # a deep array is no event
            await self._error(
                400, refused.message, code=refused.code, stream_id=lane if isinstance(lane, str) else None
            )
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "response.create":
            await self._take(event)
        elif kind == "response.steer":
            await self._steer(event)
        else:
            shown = repr(kind)[:80] if isinstance(event, dict) else "a JSON value that is not an object"
            await self._error(
                400,
                f"unknown event {shown}: a client event is a JSON object whose `type` is response.create "
                "or response.steer",
                code="invalid_event",
                param="type",
            )

    async def _take(self, event: dict[str, Any]) -> None:
        """`event` queued on its stream, answered when those before it on the stream have been."""
        name = event.get("stream_id")
        if name is not None and (not isinstance(name, str) or not name or len(name) > 200):
            await self._error(
                400,
                "stream_id: a non-empty string (up to 200 characters)",
                code="invalid_type",
                param="stream_id",
            )
            return
        # room first: while it is awaited, the stream's worker may end and drop its lane, and an event
        # put on that lane would run beside the stream's next (its order lost, its lane untracked)
        await self.room.acquire()
        lane = self.lanes.get(name)
        if lane is None:
            limit = self.settings.responses_ws_streams
            if len(self.lanes) >= limit:
                self.room.release()
                await self._error(
                    400,
                    f"this connection runs {len(self.lanes)} streams already, the most it may "
                    f"(SWITCHYARD_RESPONSES_WS_STREAMS): send this response on one of them, once its "
                    "response has ended, or open another connection",
                    code="too_many_streams",
                    param="stream_id",
                    stream_id=name,
                )
                return
            lane = self.lanes[name] = Lane(name)
        lane.pending.append(event)
        if lane.worker is None:
            lane.worker = asyncio.create_task(self._run_lane(lane))

    async def _run_lane(self, lane: Lane) -> None:
        RECENT.set(Recent(self.memory, lane.name))  # this task's, and its requests': `chain.load` reads it
        try:
            while lane.pending and not self.gone.is_set():
                event: dict[str, Any] | None = lane.pending.pop(0)
                try:
                    while event is not None:  # a steered response's successor follows it at once
                        await self._create(event, lane)
                        event = await self._after(lane)
                finally:
                    self.room.release()
        finally:
            for _ in lane.pending:  # dropped (the connection ends)
                self.room.release()
            lane.pending.clear()
            lane.worker = None
            del self.lanes[lane.name]
            self._wake()  # the idle bound starts again when nothing runs

    async def _create(self, event: dict[str, Any], lane: Lane) -> None:
        held = self.held.pop(event.get("previous_response_id"), None)  # type: ignore[arg-type]
        if held is not None:
            event = steering.with_queued(event, held[1])  # the tool outputs it waited for, and more
        body = orjson.dumps({**{k: v for k, v in event.items() if k not in TRANSPORT}, "stream": True})
        if event.get("generate") is False:
            await self._warm_up(body, lane.name)
            return
        lane.create = event
        await self._respond(body, lane)
        for steer in lane.committing:  # its successor was not created: the input is given back
            await self._steered(
                lane, steering.failed_after(steer, "successor_creation_failed", steering.NOT_CREATED)
            )
        lane.committing = []

    async def _after(self, lane: Lane) -> dict[str, Any] | None:
        """What becomes of the input steering the response that has just ended: the successor's
        `response.create`, or None (held for the client's continuation, or given back)."""
        steers, ended, create = lane.steers, lane.ended, lane.create
        lane.steers, lane.ended, lane.create, lane.current = [], None, None, None
        if ended is not None:  # its stream, for a steer that comes too late
            self.answered[str(ended.get("id"))] = lane.name
            if len(self.answered) > ANSWERED:
                del self.answered[next(iter(self.answered))]
        if not steers or create is None:
            return None
        answered = ended is not None and ended.get("status") in ("completed", "incomplete")
        if not answered or self.stopping or self.closing or ended is None:
            for steer in steers:
                failed = steering.failed_after(steer, "response_not_active", steering.NOT_ACTIVE)
                await self._steered(lane, failed)
            return None
        required = steering.required_input(ended)
        if required:
            self.held[str(ended["id"])] = (lane.name, steers)
            for steer in steers:
                await self._steered(lane, steering.pending(steer, required))
            if len(self.held) > self.settings.responses_ws_streams:  # the oldest is given back
                name, dropped = self.held.pop(next(iter(self.held)))
                for steer in dropped:
                    failed = steering.failed_after(steer, "response_not_active", steering.NOT_CONTINUED)
                    await self._send(tagged(orjson.dumps(failed), name))
            return None
        lane.committing = steers
        return steering.successor(create, str(ended["id"]), steers)

    async def _steer(self, event: dict[str, Any]) -> None:
        """`response.steer`: accepted for the response under way it names, or given back."""
        target = event.get("previous_response_id")
        lane = next((ln for ln in self.lanes.values() if ln.current == target), None) if target else None
        got = steering.accept(event)
        if isinstance(got, str):
            invalid = orjson.dumps(steering.failed(event, "invalid_input", got))
            await self._send(tagged(invalid, lane.name if lane is not None else None))
            return
        if lane is None or lane.create is None:
            if got.target in self.answered:
                gone = steering.failed(event, "response_already_completed", steering.COMPLETED)
            else:
                gone = steering.failed(event, "response_not_found", steering.NOT_FOUND)
            await self._send(tagged(orjson.dumps(gone), self.answered.get(got.target)))
            return
        if lane.create.get("conversation") is not None:
            failed = steering.failed(event, "steering_not_supported", steering.CONVERSATION)
        elif len(lane.steers) >= steering.MAX_PENDING:
            failed = steering.failed(event, "too_many_pending_steers", steering.TOO_MANY)
        elif self._queued_bytes() + got.size > self.settings.max_body_bytes:
            failed = steering.failed(event, "too_many_pending_steers", steering.TOO_LARGE)
        else:
            lane.steers.append(got)
            await self._steered(lane, steering.accepted(got))
            return
        await self._steered(lane, failed)

    def _queued_bytes(self) -> int:
        """The bytes of steering input the connection holds (at most a request body's: it is sent in one)."""
        queued = [s for ln in self.lanes.values() for s in (*ln.steers, *ln.committing)]
        queued += [s for _, held in self.held.values() for s in held]
        return sum(s.size for s in queued)

    async def _steered(self, lane: Lane, event: dict[str, Any]) -> None:
        await self._send(tagged(orjson.dumps(event), lane.name))

    async def _warm_up(self, body: bytes, lane: str | None) -> None:
        try:
            principal = await authenticate(self.handshake, self.gw.verifier)
            events = await responses_warmup.prepare(self.gw, principal, body, request_id=self.request_id)
        except APIError as exc:
            await self._send(tagged(orjson.dumps(api_error_event(exc, self.request_id)), lane))
            return
        for event in events:
            await self._send(tagged(orjson.dumps(event), lane))

    async def _respond(self, body: bytes, lane: Lane) -> None:
        """`body` as `POST /v1/responses` through the app: its events sent on, or its error as one; the
        response's id and its end are noted for steering."""

        async def send(data: bytes) -> None:
            if data.startswith(b'{"type":"response.created"'):
                lane.current = str(orjson.loads(data)["response"]["id"])
                lane.committing = []  # a successor's input is committed
            elif data.startswith(ENDED):
                lane.ended = orjson.loads(data)["response"]
            await self._send(tagged(data, lane.name))

        reply = Reply(send, self.gone)
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
        headers = [(k, v) for k, v in scope["headers"] if k not in sockets.HANDSHAKE_ONLY]
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

    async def _close_stopping(self) -> None:
        await self._close(1012, "the gateway is stopping")

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

    async def _raise(self, exc: APIError) -> None:
        await self._send(orjson.dumps(api_error_event(exc, self.request_id)))

    async def _send(self, data: bytes) -> None:
        if self.gone.is_set():
            return
        try:
            await self.ws.send_text(data.decode())
        except (RuntimeError, OSError, WebSocketDisconnect):
            self.gone.set()


async def _nothing() -> None:
    """The end of a connection its client closed."""
