"""Every replica forgets an erased organisation's semantic-cache vectors.

The embedded index (Qdrant Edge) is one shard per replica; the erasure runs on one replica only. Each
replica follows the tenant registry (`switchyard-tenants`, common/tenants.py), which the erasure marks
erased once the organisation's keys are revoked: when an entry turns erased, the replica deletes the
organisation's points from its own index. The watch's initial values include every organisation erased
while the replica was stopped, so those go at its start too (one filtered delete each, once per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js.kv import KeyValue

from switchyard.common import kv, tenants
from switchyard.gateway.cache.backends import VectorIndex

log = logging.getLogger(__name__)


class ForgetErased:
    def __init__(self, bucket: KeyValue, index: VectorIndex) -> None:
        self._bucket = bucket
        self._index = index
        self._done: set[str] = set()  # tenants forgotten by this process
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Forgets every organisation the registry lists as erased, then follows it."""
        self._watcher = await self._bucket.watchall()
        loaded = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._follow(self._watcher, loaded), name="cache-forget-erased")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30.0):
                await asyncio.shield(loaded)

    async def stop(self) -> None:
        await kv.unwatch(self._task, self._watcher)
        self._task, self._watcher = None, None

    async def _follow(self, watcher: KeyValue.KeyWatcher, loaded: asyncio.Future[None]) -> None:
        async for update in watcher:
            if update is None:  # the end of the initial values
                if not loaded.done():
                    loaded.set_result(None)
                continue
            entry = tenants.parse(update.value)
            if entry is None or entry.status != "erased" or entry.tenant_id in self._done:
                continue
            try:
                await asyncio.to_thread(self._index.forget_tenant, entry.tenant_id)
            except Exception as exc:  # the index is closing, or Qdrant is away: the next start retries
                log.warning(
                    "semantic cache: organisation %s erased, its vectors not deleted here (%s: %s)",
                    entry.tenant_id,
                    type(exc).__name__,
                    exc,
                )
                continue
            self._done.add(entry.tenant_id)
            log.info("semantic cache: organisation %s erased, its vectors deleted here", entry.tenant_id)
        if not loaded.done():
            loaded.set_result(None)
