"""Cancelled tasks: `switchyard.task.cancelled`, and `switchyard.task.timed_out`, which the gateway publishes
when it stops waiting for a task (a 504): a task nobody waits for is not run, or not run on, for nobody
(under a backlog, the tasks whose clients gave up would otherwise all still run, and be paid for, when
their turn came).

Every executor replica hears every one of them from the stream (see cancellation_feed.py), including
those published while it was disconnected or (re)starting: a replica that starts replays the last
`remember_s` of them before it takes its first task, so a task cancelled while no executor was there (or
redelivered to a restarted one) is skipped rather than run and paid for.

A task running here is stopped: its execution runs as a task of its own, which is cancelled, and
`execute` ends it with `task_cancelled` (the provider call is cut and recorded with an estimate of what the
upstream already spent, billed like a parallel loser). A task not started yet is remembered for a while,
so it is skipped when it arrives. A cancellation names its tenant and counts only for that tenant's task.

A cancellation older than `remember_s` (by its own time, not when it was heard: a replay does not make an
old one new) is forgotten, and the task then runs as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from switchyard.common.envelope import CloudEvent, decode
from switchyard.common.errors import InvalidEvent
from switchyard.common.events import TaskCancelled, TaskTimedOut
from switchyard.executor.recent import Recent

log = logging.getLogger(__name__)


class Cancellations:
    def __init__(
        self,
        *,
        remember_s: float = 600.0,
        most: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        on_cancel: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_cancel(tenant_id, task_id)`: told of every cancellation recorded (what a task left behind,
        such as its stored vectors, may go: `kept_vectors.py`)."""
        self.remember_s = remember_s
        self._on_cancel = on_cancel
        self._asked: Recent[tuple[str, str]] = Recent(keep_s=remember_s, most=most, clock=clock)
        self._running: dict[tuple[str, str], asyncio.Task[Any]] = {}

    def cancel(self, tenant_id: str, task_id: str, *, age_s: float = 0.0) -> bool:
        """Records the cancellation, made `age_s` ago; True when the task was running here and is now
        being stopped. One older than `remember_s` (a replay brings them) is forgotten already."""
        if age_s >= self.remember_s:
            return False
        key = (tenant_id, task_id)
        self._asked.add(key, age_s=age_s)
        if self._on_cancel is not None:
            self._on_cancel(tenant_id, task_id)
        running = self._running.get(key)
        return running is not None and running.cancel(msg="cancelled by the client")

    def asked(self, tenant_id: str, task_id: str) -> bool:
        return (tenant_id, task_id) in self._asked

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

    async def on_message(
        self, data: bytes, *, subject: str | None = None, stored_at: datetime | None = None
    ) -> None:
        """A message on a cancellation subject (anything else there is ignored: the audit consumer, which
        reads the same subjects from the stream, dead-letters invalid events). Its age is the event's own
        time (`cancelled_at`; the envelope's `time` for a timeout), else `stored_at`, when the stream
        stored it, else none: an event without a time is taken as new. One on a tenant-scoped subject
        that names another tenant (`subject`: the one it came on) is ignored (`tenant_mismatch`)."""
        try:
            event, payload = decode(data, (TaskCancelled, TaskTimedOut), subject=subject)
        except InvalidEvent as exc:
            log.debug("ignoring an invalid cancellation: %s", exc)
            return
        if not isinstance(payload, TaskCancelled | TaskTimedOut):
            return
        why = payload.reason if isinstance(payload, TaskCancelled) else "timed out: nobody waits for it"
        made = _made_at(event, payload) or stored_at
        age_s = 0.0 if made is None else time.time() - _aware(made).timestamp()
        if self.cancel(payload.tenant_id, payload.task_id, age_s=age_s):
            log.info("task %s cancelled (%s): stopping it", payload.task_id, why)


def _made_at(event: CloudEvent, payload: TaskCancelled | TaskTimedOut) -> datetime | None:
    return payload.cancelled_at if isinstance(payload, TaskCancelled) else event.time


def _aware(moment: datetime) -> datetime:
    """A time without a zone is UTC (as the gateway writes them)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
