"""The gateway's graceful stop, as its requests see it.

After SIGTERM uvicorn stops taking connections and gives the requests under way the stop grace to end;
then it cancels them, which a response already begun (a stream) cannot answer: the client sees its
connection cut with no word why. So the gateway ends what is still running itself a little before that
(`margin_s`): a request waiting for its answer gets 503 `gateway_stopping`, a stream under way its face's
error event; each one's task is cancelled on the bus and settled at its outcome or handed over
(`serving`, `inflight`). A request that reaches admission after that moment is refused the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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

    def begin(self) -> None:
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

    def __init__(self, config: uvicorn.Config, stop: Stop) -> None:
        super().__init__(config)
        self._stop = stop

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
