"""`RequestContext` answers a request the server cancels at its stop, before any response began, with a
503 the client can read and retry, instead of uvicorn's plain-text 500 without a request id."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from switchyard.common.logs import configure_logging
from switchyard.gateway.middleware import RequestContext
from switchyard.gateway.stopping import Stop

pytestmark = pytest.mark.unit


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 5000),
    }


async def _body_never_ends(scope: Any, receive: Any, send: Any) -> None:
    """Stands for a request still reading a body its client is slow to send (or authenticating)."""
    await asyncio.Event().wait()


async def _stream_under_way(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
    await asyncio.Event().wait()


async def _run_cut(app: Any, stop: Stop, path: str = "/v1/chat/completions") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    request = asyncio.ensure_future(RequestContext(app, stop=stop)(_scope(path), receive, send))
    await asyncio.sleep(0.01)
    request.cancel()  # as uvicorn does when its graceful stop runs out
    await request
    return sent


async def test_a_request_cut_by_the_stop_before_its_answer_gets_a_503_with_its_request_id() -> None:
    stop = Stop(10)
    stop.begin()
    sent = await _run_cut(_body_never_ends, stop)
    start, body = sent[0], sent[1]
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"1" and headers[b"content-type"] == b"application/json"
    error = orjson.loads(body["body"])["error"]
    assert error["code"] == "gateway_stopping" and error["type"] == "service_unavailable"
    assert error["request_id"] == headers[b"x-request-id"].decode()
    assert error["request_id"].startswith("req_")


async def test_the_anthropic_face_gets_its_own_error_shape() -> None:
    stop = Stop(10)
    stop.begin()
    sent = await _run_cut(_body_never_ends, stop, path="/v1/messages")
    answer = orjson.loads(sent[1]["body"])
    assert sent[0]["status"] == 503
    assert answer["type"] == "error" and answer["error"]["type"] == "overloaded_error"


async def test_a_cancellation_that_is_not_the_stops_is_not_swallowed() -> None:
    with pytest.raises(asyncio.CancelledError):
        await _run_cut(_body_never_ends, Stop(10))


async def test_a_stream_under_way_is_not_answered_twice() -> None:
    stop = Stop(10)
    stop.begin()
    with pytest.raises(asyncio.CancelledError):
        await _run_cut(_stream_under_way, stop)


async def test_what_is_logged_while_a_request_runs_names_its_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A client's error carries its request id; the gateway's log lines written for that request carry
    the same one (docs/operations/runbooks.md: a 500 is found in the logs by it), the tasks it spawns
    (an abandoned task's follow-up) included, and a line logged outside any request carries none."""
    configure_logging(service="gateway", json=True)
    log = logging.getLogger("switchyard.gateway.test")
    spawned: list[asyncio.Task[None]] = []

    async def follow_up() -> None:
        log.warning("followed up")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        log.error("unhandled error on POST /v1/chat/completions")
        spawned.append(asyncio.create_task(follow_up()))
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await RequestContext(app)(_scope("/v1/chat/completions"), receive, send)
    await asyncio.gather(*spawned)
    log.warning("between requests")
    request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
    lines = {line["event"]: line for line in map(orjson.loads, capsys.readouterr().err.splitlines())}
    assert lines["unhandled error on POST /v1/chat/completions"]["request_id"] == request_id
    assert lines["followed up"]["request_id"] == request_id
    assert "request_id" not in lines["between requests"]
