"""The gateway's graceful stop, as its requests see it.

After SIGTERM uvicorn stops taking connections and gives the requests under way the stop grace to end;
then it cancels them, which a response already begun (a stream) cannot answer: the client sees its
connection cut with no word why. So the gateway ends what is still running itself a little before that
(`margin_s`): a request waiting for its answer gets 503 `gateway_stopping`, a stream under way its face's
error event; each one's task is cancelled on the bus and settled at its outcome or handed over
(`serving`, `inflight`). A request that reaches admission after that moment is refused the same way.

Before all that, from the moment SIGTERM comes, `/readyz` answers 503 `stopping` with the reason, and with
SWITCHYARD_STOP_UNREADY_S the server keeps taking connections that long first (serving them as before), so
a load balancer that checks `/readyz` takes the replica out of its rotation before its listening socket
closes: new requests go elsewhere instead of meeting a refused connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from switchyard.gateway.errors import GatewayStopping

log = logging.getLogger(__name__)

MARGIN_S = 1.0  # how long before uvicorn's cut the gateway ends its requests (a quarter of a short grace)


class Stop:
    """The moment the requests still running are ended, once the graceful stop has begun (`begin`).
    Requests register a hook (`on_cut`) and forget it when they end: a set, so that thousands of
    requests in flight cost nothing to add or remove (one future shared by all would rebuild its list of
    callbacks each time a request ends)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.margin_s = min(MARGIN_S, grace_s / 4)
        self.begun = False
        self.cutting = False
        self.unready_since: float | None = None  # time.time() of the signal: /readyz is 503 from then
        self.immediate = False  # no unready period (`at_once`)
        self._hooks: set[Callable[[], None]] = set()
        self._begin_hooks: set[Callable[[], None]] = set()  # what waits for the stop to begin (WebSockets)

    def on_cut(self, hook: Callable[[], None]) -> None:
        """`hook` is called at the moment (soon, if it has passed)."""
        _when(self.cutting, self._hooks, hook)

    def forget(self, hook: Callable[[], None]) -> None:
        self._hooks.discard(hook)

    def on_begin(self, hook: Callable[[], None]) -> None:
        """`hook` is called when the graceful stop begins (soon, if it has)."""
        _when(self.begun, self._begin_hooks, hook)

    def forget_begin(self, hook: Callable[[], None]) -> None:
        self._begin_hooks.discard(hook)

    @property
    def watched(self) -> int:
        """How many hooks wait for the moment (a request each)."""
        return len(self._hooks)

    def unready(self) -> None:
        """The stop is coming (SIGTERM): /readyz says so from now on. Only an attribute set: it is called
        from a signal handler."""
        if self.unready_since is None:
            self.unready_since = time.time()

    def at_once(self) -> None:
        """Stops this replica with no unready period (it was taken for dead: what it admits now it may not
        give back): SIGTERM to itself, which `Server` then does not delay."""
        self.immediate = True
        os.kill(os.getpid(), signal.SIGTERM)

    @property
    def stopping(self) -> bool:
        return self.unready_since is not None or self.begun

    def begin(self) -> None:
        self.unready()
        self.begun = True
        after_s = max(0.0, self.grace_s - self.margin_s)
        log.info("stopping: requests still running in %.1f s are ended (gateway_stopping)", after_s)
        asyncio.get_running_loop().call_later(after_s, self._end)
        hooks, self._begin_hooks = self._begin_hooks, set()
        for hook in hooks:
            hook()

    def _end(self) -> None:
        self.cutting = True
        hooks, self._hooks = self._hooks, set()
        for hook in hooks:
            hook()


def _when(passed: bool, hooks: set[Callable[[], None]], hook: Callable[[], None]) -> None:
    if passed:
        asyncio.get_running_loop().call_soon(hook)
    else:
        hooks.add(hook)


def cut(said: str) -> GatewayStopping:
    """The error for a request the server cancelled as it stopped (uvicorn cancels what outlasts its
    graceful stop), instead of uvicorn's plain-text 500; `said` is logged. The request's task no longer
    counts the cancellation (it has become this error), so the error is answered as any other."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()
    log.warning(said)
    return GatewayStopping()


class Server(uvicorn.Server):
    """uvicorn's server, telling `stop` when its graceful stop begins.

    uvicorn closes every WebSocket connection at once when it stops (1012), cutting the response one is
    streaming; the Responses WebSocket connections close themselves instead (`responses_ws`): at once when
    idle, else once the response under way has ended, within the grace as an HTTP stream is given it."""

    def __init__(self, config: uvicorn.Config, stop: Stop, *, unready_s: float = 0.0) -> None:
        super().__init__(config)
        self._stop = stop
        self._unready_s = unready_s
        self._close_at: float | None = None  # time.monotonic() when the unready period ends

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first SIGTERM/SIGINT makes the replica unready; with `unready_s`, uvicorn's stop (its
        listening socket closed, then the grace for what runs) begins that much later (`on_tick`). A
        second signal begins it at once, as uvicorn's own handling would."""
        self._stop.unready()
        if (
            self._unready_s > 0
            and self._close_at is None
            and not self.should_exit
            and not self._stop.immediate
        ):
            self._close_at = time.monotonic() + self._unready_s
            self._captured_signals.append(sig)  # re-raised once uvicorn has stopped, as its own are
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        closing = self._close_at is not None and not self.should_exit
        if closing and (self._stop.immediate or time.monotonic() >= (self._close_at or 0.0)):
            log.info("stopping: no longer taking connections")
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self._stop.begin()
        websocket = self.config.ws_protocol_class
        if isinstance(websocket, type):
            for connection in self.server_state.connections:
                if isinstance(connection, websocket):
                    connection.shutdown = _left_to_the_app  # type: ignore[method-assign]
        await super().shutdown(*args, **kwargs)


def _left_to_the_app() -> None:
    """A WebSocket connection's part in uvicorn's stop: none (see `Server`); uvicorn still waits for it."""
