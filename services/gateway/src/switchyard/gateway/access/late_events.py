"""An erased organisation's task events published after its erasure read the streams are deleted too.

A task of the organisation already past the pipeline's tenant check when it was erased (at a provider)
publishes its answer afterwards, and one refused afterwards (`unknown_tenant`) is copied to the dead-letter
stream: both after the erasure's scan (access/bus_purge.py). No task runs longer than
SWITCHYARD_ASYNC_TASK_TIMEOUT_S, so for that long (and MARGIN_S) after an organisation is marked erased in
the tenant registry, every gateway replica reads the streams' events stored since the erasure, every
EVERY_S, and deletes those that name it (only what came since: a short read). It begins FIRST_AFTER_S
after the mark, once the erasure's own read is over (its counts stay its own). A replica stopped meanwhile
does it at its start for the organisations still in their window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.common import tenants
from switchyard.common.background import cancel
from switchyard.gateway.access.bus_purge import purge_events

log = logging.getLogger(__name__)
EVERY_S = 60.0
MARGIN_S = 300.0  # beyond the longest task: its executor's last retry, a result stored late
SLACK_S = 60.0  # read from this long before the erasure's mark (clocks of the replicas)
FIRST_AFTER_S = 300.0  # the erasure's own read of the streams takes at most a minute (bus_purge.DEADLINE_S)


class LateEvents:
    def __init__(self, js: JetStreamContext, registry: KeyValue, *, window_s: float) -> None:
        self._js = js
        self._registry = registry
        self._window_s = window_s + MARGIN_S
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._every(), name="erased-late-events")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _every(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the bus is away: the next round reads again
                log.warning("late events of erased organisations not swept (%s: %s)", type(exc).__name__, exc)
            await asyncio.sleep(EVERY_S)

    async def sweep(self, *, now: float | None = None) -> int:
        """Deletes the events stored since its erasure of each organisation erased within the window; how
        many."""
        now = time.time() if now is None else now
        deleted = 0
        for entry in (await tenants.glimpse(self._registry)).values():
            erased_at = _parsed(entry.at) if entry.status == "erased" else None
            if erased_at is None or not FIRST_AFTER_S <= now - erased_at.timestamp() <= self._window_s:
                continue
            since = erased_at - timedelta(seconds=SLACK_S)
            purged = await purge_events(self._js, entry.tenant_id, since=since)
            if purged.deleted:
                log.info("erased organisation %s: %d late events deleted", entry.tenant_id, purged.deleted)
            deleted += purged.deleted
        return deleted


def _parsed(at: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
