"""A plain ASGI middleware (no BaseHTTPMiddleware: it buffers and slows streams): assigns each request
an id, returns it as `x-request-id` (on the Anthropic face, `errors_faces.anthropic_face`, also as
`request-id`, where Anthropic's SDKs read a response's and an error's request id) and puts it on every log
line written for the request (`request_id`: a client's error leads to them), records the request's latency and
status, and its span when tracing is on (a `traceparent` header makes it part of the caller's trace). A
request the server cancels at its stop before any response began (still authenticating or reading its
body) is answered 503 `gateway_stopping` here, instead of uvicorn's plain-text 500 without a request id;
an unexpected error (a bug) before any response began, with the house's 500 (`errors.unexpected`), the
connection kept for the client's next request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchyard.common import tracing
from switchyard.common.ids import new_id
from switchyard.common.logs import bound
from switchyard.gateway import overhead
from switchyard.gateway.errors import error_response, unexpected
from switchyard.gateway.errors_faces import anthropic_face
from switchyard.gateway.metrics import LATENCY, OVERHEAD, REQUESTS
from switchyard.gateway.stopping import Stop, cut

# Probes and scrapes: a span each would bury the requests in noise.
UNTRACED = frozenset({"/metrics", "/healthz", "/readyz"})


class RequestContext:
    def __init__(self, app: ASGIApp, stop: Stop | None = None) -> None:
        self.app = app
        self.stop = stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{new_id()[:24]}"
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = started  # the self-timed overhead (overhead.py) counts from here
        status = 500
        began = False
        traceresponse: bytes | None = None  # W3C Trace Context's response header: the trace to look for

        async def send_wrapper(message: Message) -> None:
            nonlocal status, began
            if message["type"] == "http.response.start":
                status, began = message["status"], True
                headers: list[Any] = list(message.get("headers", []))
                if not any(k == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                for key, value in headers:
                    if key == overhead.HEADER_BYTES:  # an answer sent whole: its own time is known now
                        state[overhead.STATE] = float(value)
                if anthropic_face(scope["path"], versioned=_header(scope, b"anthropic-version") is not None):
                    headers.append((b"request-id", request_id.encode()))
                if traceresponse is not None:
                    headers.append((b"traceresponse", traceresponse))
                message["headers"] = headers
            await send(message)

        traced = scope["path"] not in UNTRACED
        with (
            bound(request_id=request_id),
            tracing.span(
                f"{scope['method']} {scope['path']}",
                kind=SpanKind.SERVER,
                traceparent=_header(scope, b"traceparent") if traced else None,
                attributes=_span_attributes(scope, request_id),
                record=traced,
            ) as span,
        ):
            if span is not None:
                traceresponse = tracing.format_traceparent(span.get_span_context()).encode()
            try:
                await self.app(scope, receive, send_wrapper)
            except asyncio.CancelledError:
                if began or self.stop is None or not self.stop.begun:  # not the stop's, or a stream under way
                    raise
                stopping = cut("a request was cut by the gateway's stop before its answer began")
                await error_response(Request(scope), stopping)(scope, receive, send_wrapper)
            except Exception as exc:
                if began:  # an answer half sent: uvicorn closes the connection, which is all it can do
                    raise
                # answered here: Starlette's last resort re-raises after answering, and uvicorn then closes a
                # connection the client may send its next request on
                await unexpected(Request(scope), exc)(scope, receive, send_wrapper)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                REQUESTS.labels(path, str(status)).inc()
                LATENCY.labels(path).observe(time.perf_counter() - started, tracing.exemplar())
                own_ms = state.get(overhead.STATE)
                if own_ms is not None:
                    OVERHEAD.labels(path).observe(own_ms / 1000.0)
                if span is not None:
                    _end_attributes(span, scope, path, status)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _span_attributes(scope: Scope, request_id: str) -> dict[str, Any]:
    """The request's span (OpenTelemetry's HTTP conventions): method, path, request id; no query, no
    header but the trace context."""
    if not tracing.enabled():
        return {}
    return {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "switchyard.request_id": request_id,
    }


def _end_attributes(span: Span, scope: Scope, path: str, status: int) -> None:
    """Named by its route (`GET /v1/tasks/{task_id}`), or by its method alone when no route matched, as
    OpenTelemetry's HTTP conventions say: a name per raw path (a scanner's probes) would be unbounded."""
    if path != "unmatched":
        span.update_name(f"{scope['method']} {path}")
        span.set_attribute("http.route", path)
    else:
        span.update_name(str(scope["method"]))
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)
