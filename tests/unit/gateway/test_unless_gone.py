"""`unless_gone`: a plain completion waits for its task unless the client goes away first."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from switchyard.gateway.errors import ClientClosedRequest, GatewayStopping, ServiceUnavailable, TaskTimeout
from switchyard.gateway.gone import unless_gone
from switchyard.gateway.stopping import Stop

pytestmark = pytest.mark.unit


class Connection:
    """Stands for the request: `receive` answers as ASGI does once the body was read."""

    def __init__(self, *, fails: bool = False) -> None:
        self.gone = asyncio.Event()
        self.fails = fails

    async def receive(self) -> dict[str, Any]:
        if self.fails:
            raise RuntimeError("this server cannot be watched")
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def _answer(after_s: float, value: str = "done") -> str:
    await asyncio.sleep(after_s)
    return value


async def test_the_answer_comes_first() -> None:
    gone: list[bool] = []
    result = await unless_gone(Connection(), _answer(0.01), on_gone=lambda: gone.append(True))  # type: ignore[arg-type]
    assert result == "done" and gone == []


async def test_the_client_goes_first_and_the_wait_is_cut() -> None:
    connection, gone = Connection(), []
    work = asyncio.ensure_future(_answer(30))
    asyncio.get_running_loop().call_later(0.01, connection.gone.set)
    with pytest.raises(ClientClosedRequest) as caught:
        await unless_gone(connection, work, on_gone=lambda: gone.append(True))  # type: ignore[arg-type]
    assert caught.value.status == 499 and gone == [True]
    await asyncio.sleep(0)
    assert work.cancelled()


async def test_an_error_of_the_work_is_its_own() -> None:
    async def times_out() -> str:
        raise TaskTimeout("late")

    with pytest.raises(TaskTimeout):
        await unless_gone(Connection(), times_out(), on_gone=lambda: None)  # type: ignore[arg-type]


async def test_a_connection_that_cannot_be_watched_is_not_taken_for_gone() -> None:
    gone: list[bool] = []
    result = await unless_gone(Connection(fails=True), _answer(0.05), on_gone=lambda: gone.append(True))  # type: ignore[arg-type]
    assert result == "done" and gone == []


async def test_what_abandoned_work_ends_with_is_not_logged_as_unretrieved() -> None:
    """Cancelled, the work may still end with an error of its own (the gateway's wait ends with the task's
    "cancelled" failure): nobody reads it, and asyncio must not report it as never retrieved."""
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    connection = Connection()

    async def fails_when_cancelled() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            raise RuntimeError("the task failed: cancelled") from None
        return "unreachable"

    work = asyncio.ensure_future(fails_when_cancelled())
    loop.call_later(0.01, connection.gone.set)
    with pytest.raises(ClientClosedRequest):
        await unless_gone(connection, work, on_gone=lambda: None)  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert work.done() and not work.cancelled()  # it ended with its error (not read here)
    del work
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert [c for c in reported if "never retrieved" in str(c.get("message"))] == []


async def test_the_request_cut_by_the_servers_stop_abandons_the_task_and_says_so() -> None:
    """The server's graceful stop runs out and cancels the request: for the task that is a client gone
    (cancelled on the bus, settled at its outcome), not an answer (before, the admission was settled as
    if the task had never run while it went on running and was charged); the client gets a 503 it may
    retry at once (uvicorn answered a plain-text 500), and the request's task is no longer cancelling."""
    gone: list[bool] = []
    work = asyncio.ensure_future(_answer(30))

    async def request() -> int:
        with pytest.raises(ServiceUnavailable) as caught:
            await unless_gone(Connection(), work, on_gone=lambda: gone.append(True))  # type: ignore[arg-type]
        assert caught.value.code == "gateway_stopping" and caught.value.headers == {"Retry-After": "1"}
        current = asyncio.current_task()
        assert current is not None
        return current.cancelling()

    serving = asyncio.ensure_future(request())
    await asyncio.sleep(0.01)
    serving.cancel()
    assert await serving == 0
    assert gone == [True]
    await asyncio.sleep(0)
    assert work.cancelled()


async def test_the_gateway_stopping_ends_the_wait_before_the_server_cuts_it() -> None:
    """The gateway's stop reaches the moment it ends its requests before the answer: the task is abandoned
    as for a client gone, and the client is told to retry; the request's task was never cancelled, so
    nothing is left to undo."""
    gone: list[bool] = []
    work = asyncio.ensure_future(_answer(30))
    stop = Stop(0.04)
    stop.begin()
    with pytest.raises(GatewayStopping) as caught:
        await unless_gone(Connection(), work, on_gone=lambda: gone.append(True), stop=stop)  # type: ignore[arg-type]
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "1"}
    assert gone == [True]
    await asyncio.sleep(0)
    assert work.cancelled()
    assert stop.watched == 0  # what it registered is forgotten


async def test_an_answer_there_when_the_gateway_stops_is_answered() -> None:
    gone: list[bool] = []
    work = asyncio.ensure_future(_answer(0))
    await asyncio.sleep(0.01)
    stop = Stop(0)
    stop.begin()
    await asyncio.sleep(0.01)
    assert stop.cutting
    result = await unless_gone(Connection(), work, on_gone=lambda: gone.append(True), stop=stop)  # type: ignore[arg-type]
    assert result == "done" and gone == []


async def test_a_request_that_ends_forgets_its_hook() -> None:
    stop = Stop(10)
    for _ in range(3):
        await unless_gone(Connection(), _answer(0), on_gone=lambda: None, stop=stop)  # type: ignore[arg-type]
    assert stop.watched == 0


async def test_the_stop_ends_requests_its_margin_before_the_grace_runs_out() -> None:
    stop = Stop(0.2)
    ended = asyncio.Event()
    stop.on_cut(ended.set)
    assert not stop.cutting and not stop.begun
    began = time.monotonic()
    stop.begin()
    assert stop.begun and not stop.cutting
    await ended.wait()
    assert stop.cutting
    assert 0.14 <= time.monotonic() - began < 0.2  # a quarter of a short grace before its end
    late = asyncio.Event()
    stop.on_cut(late.set)  # registered after the moment: called at once
    await asyncio.wait_for(late.wait(), 1)
    assert Stop(10).margin_s == 1.0
