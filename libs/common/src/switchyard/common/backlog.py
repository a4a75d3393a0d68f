"""Writes a service owes after the bus refused them through every retry of their own, done again in the
background until they succeed, and once more at shutdown.

The owner keeps what is owed and says how to write it: `flush` writes everything still owed (dropping each
item once written) and raises while something is still refused; `owed` tells whether anything is left.
`Backlog` runs `flush` with a doubling delay (`first_s` up to `max_s`, back to `first_s` after a flush
that went through) while anything is owed, and `close` runs it one last time, logging what is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from switchyard.common.background import cancel_all

log = logging.getLogger(__name__)


class Backlog:
    def __init__(
        self,
        flush: Callable[[], Awaitable[None]],
        owed: Callable[[], int],
        *,
        what: str,
        first_s: float = 0.25,
        max_s: float = 10.0,
    ) -> None:
        self._flush = flush
        self._owed = owed
        self._what = what  # for the log: "provider-call records", "task states"
        self._first_s = first_s
        self._max_s = max_s
        self._runner: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Something new is owed: retry in the background unless that is already running."""
        if self._owed() and (self._runner is None or self._runner.done()):
            self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        delay = self._first_s
        while self._owed():
            await asyncio.sleep(delay)
            try:
                await self._flush()
            except Exception as exc:
                log.warning("%d %s still refused (%s)", self._owed(), self._what, exc)
                delay = min(delay * 2, self._max_s)
            else:
                delay = self._first_s

    async def close(self) -> None:
        """One last attempt, while still connected; what is still refused is logged, then lost."""
        if self._runner is not None:
            await cancel_all({self._runner})
        if not self._owed():
            return
        try:
            await self._flush()
        except Exception:
            log.exception("%d %s could not be written before shutdown", self._owed(), self._what)
