"""A request whose client goes away, or which the gateway's stop cuts, before its answer: the work is
cancelled, the task with it (`on_gone`), and the client told why (`unless_gone`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request

from switchyard.gateway.errors import ClientClosedRequest, GatewayStopping
from switchyard.gateway.stopping import Stop, cut

log = logging.getLogger(__name__)
T = TypeVar("T")
CUT = "a request was cut by the gateway's stop: its task was cancelled"


async def unless_gone(
    request: Request,
    work: Coroutine[Any, Any, T],
    *,
    on_gone: Callable[[], None],
    stop: Stop | None = None,
) -> T:
    """`work`'s result, unless the client goes away first: then `work` is cancelled, `on_gone` called
    (the task is cancelled on the bus, so the provider is not paid for an answer nobody reads) and
    ClientClosedRequest raised. The gateway's `stop` ending its requests first (its graceful stop is
    about to run out) is the same for the task, `on_gone`, and the client is told so (GatewayStopping); so
    is the request itself being cancelled (uvicorn's cut, `cut`). Whatever `work` raises is raised."""
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(_disconnected(request))
    ending: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def end() -> None:
        if not ending.done():
            ending.set_result(None)

    if stop is not None:
        stop.on_cut(end)
    try:
        await asyncio.wait((working, watching, ending), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        _abandon(working, watching, on_gone)
        raise cut(CUT) from None
    finally:
        if stop is not None:
            stop.forget(end)
    if working.done():
        watching.cancel()
        return working.result()
    gone = watching.done()
    _abandon(working, watching, on_gone)
    if gone:
        raise ClientClosedRequest("the client went away before the answer; the task was cancelled")
    log.warning(CUT)
    raise GatewayStopping()


def _abandon(
    working: asyncio.Future[Any], watching: asyncio.Future[Any], on_gone: Callable[[], None]
) -> None:
    """Nobody will read `working`'s answer: what it still ends with (the task's own failure once it heard
    the cancel) is nobody's, and unread it would be logged as "Task exception was never retrieved"."""
    watching.cancel()
    if working.done():  # answered as the request was cut: settled at its outcome, as any answer
        _unread(working)
        return
    working.cancel()
    working.add_done_callback(_unread)
    on_gone()


def _unread(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


async def _disconnected(request: Request) -> None:
    """Returns once the client has disconnected: with the body read, ASGI's `receive` says only that. A
    server whose `receive` fails here instead is never taken for a disconnect: the watch just stops."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:
        log.debug("cannot watch a request's connection", exc_info=True)
        await asyncio.Event().wait()  # cancelled with the request
