"""Work started without waiting for it, kept until it ends and awaited at shutdown.

The event loop keeps only a weak reference to a task, so a task nobody holds may be collected mid-flight;
and work still running when a service stops (a lease handed back, a settlement, a cancellation to
publish) must end before the connection it uses closes. A `Background` holds its tasks until they end
and waits for them in `drain` (or `stop`, which cancels what outlives a grace period).

A cancellation can be dropped: Python 3.11's `asyncio.wait_for` (under every nats-py request) returns its
result when the cancellation arrives as that result does, so a loop around a request goes on as if never
cancelled, and whoever waits for it to end waits forever (a gateway's in-flight beat did, at a 50 ms beat).
What cancels here cancels again every `CANCEL_AGAIN_S` until the task has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

CANCEL_AGAIN_S = 1.0  # long enough for a loop's own clean-up after a cancellation; a dropped one waits this


class Background:
    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Waits until every task has ended, those started meanwhile included. A task's error is its own to
        log: it does not stop the others being waited for, and is not raised here."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self, grace_s: float) -> None:
        """Waits up to `grace_s` for the tasks running now, then cancels the rest and waits for them."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
        await cancel_all(late)


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancels `task` (a service's loop, at shutdown) and waits until it has ended; its cancellation is
    not raised here. None: nothing to do."""
    if task is None:
        return
    await cancel_all({task})
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancels `tasks` and waits until every one has ended, cancelling again those still running after
    CANCEL_AGAIN_S (their cancellation was dropped). Their errors are not raised here."""
    while tasks:
        for task in tasks:
            task.cancel()
        _, tasks = await asyncio.wait(tasks, timeout=CANCEL_AGAIN_S)
