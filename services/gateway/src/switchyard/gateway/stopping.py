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
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

MARGIN_S = 1.0  # how long before uvicorn's cut the gateway ends its requests (a quarter of a short grace)


class Stop:
    """The moment the requests still running are ended, once the graceful stop has begun (`begin`)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.margin_s = min(MARGIN_S, grace_s / 4)
        self._cut: asyncio.Future[None] | None = None
        self.begun = False

    @property
    def cut(self) -> asyncio.Future[None]:
        """Done at the moment: requests wait on it beside their answer (one future for all: no task each)."""
        if self._cut is None:
            self._cut = asyncio.get_running_loop().create_future()
        return self._cut

    @property
    def cutting(self) -> bool:
        return self._cut is not None and self._cut.done()

    def begin(self) -> None:
        self.begun = True
        after_s = max(0.0, self.grace_s - self.margin_s)
        log.info("stopping: requests still running in %.1f s are ended (gateway_stopping)", after_s)
        asyncio.get_running_loop().call_later(after_s, self._end)

    def _end(self) -> None:
        if not self.cut.done():
            self.cut.set_result(None)


class Server(uvicorn.Server):
    """uvicorn's server, telling `stop` when its graceful stop begins."""

    def __init__(self, config: uvicorn.Config, stop: Stop) -> None:
        super().__init__(config)
        self._stop = stop

    async def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self._stop.begin()
        await super().shutdown(*args, **kwargs)
