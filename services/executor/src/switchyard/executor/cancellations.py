"""Cancelled tasks: `switchyard.task.cancelled` heard on core NATS, so every executor replica hears it;
and `switchyard.task.timed_out`, which the gateway publishes when it stops waiting for a task (a 504): a
task nobody waits for is not run, or not run on, for nobody (under a backlog, the tasks whose clients
gave up would otherwise all still run, and be paid for, when their turn came).

A task running here is stopped: its execution runs as a task of its own, which is cancelled, and
`execute` ends it with `task_cancelled` (the provider call is cut and recorded with an estimate of what the
upstream already spent, billed like a parallel loser). A task not started yet is remembered for a while,
so it is skipped when it arrives. A cancellation names its tenant and counts only for that tenant's task.

Best effort: a replica that was not connected when the event was published does not hear it, and a
cancellation older than `remember_s` is forgotten (the task then runs as usual).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from switchyard.common.envelope import decode
from switchyard.common.errors import InvalidEvent
from switchyard.common.events import TaskCancelled, TaskTimedOut

log = logging.getLogger(__name__)


class Cancellations:
    def __init__(
        self,
        *,
        remember_s: float = 600.0,
        most: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._remember_s = remember_s
        self._most = most
        self._clock = clock
        self._asked: OrderedDict[tuple[str, str], float] = OrderedDict()  # (tenant, task) -> when heard
        self._running: dict[tuple[str, str], asyncio.Task[Any]] = {}

    def cancel(self, tenant_id: str, task_id: str) -> bool:
        """Records the cancellation; True when the task was running here and is now being stopped."""
        key = (tenant_id, task_id)
        now = self._clock()
        self._asked[key] = now
        self._asked.move_to_end(key)
        while self._asked and (
            len(self._asked) > self._most or next(iter(self._asked.values())) < now - self._remember_s
        ):
            self._asked.popitem(last=False)
        running = self._running.get(key)
        return running is not None and running.cancel(msg="cancelled by the client")

    def asked(self, tenant_id: str, task_id: str) -> bool:
        heard = self._asked.get((tenant_id, task_id))
        return heard is not None and heard >= self._clock() - self._remember_s

    @contextmanager
    def running(self, tenant_id: str, task_id: str, run: asyncio.Task[Any]) -> Iterator[None]:
        """While inside, a cancellation of the task cancels `run` (its execution)."""
        key = (tenant_id, task_id)
        self._running[key] = run
        try:
            yield
        finally:
            if self._running.get(key) is run:
                del self._running[key]

    async def on_message(self, data: bytes) -> None:
        """A message on the cancellation subject (anything else there is ignored: the audit consumer,
        which reads the same subject from the stream, dead-letters invalid events)."""
        try:
            _, payload = decode(data, (TaskCancelled, TaskTimedOut))
        except InvalidEvent as exc:
            log.debug("ignoring an invalid cancellation: %s", exc)
            return
        if not isinstance(payload, TaskCancelled | TaskTimedOut):
            return
        why = payload.reason if isinstance(payload, TaskCancelled) else "timed out: nobody waits for it"
        if self.cancel(payload.tenant_id, payload.task_id):
            log.info("task %s cancelled (%s): stopping it", payload.task_id, why)
