"""Auth changes shared by every gateway replica through JetStream KV.

The admin API writes `key.<id>`, `user.<id>` or `org.<id>` into the bucket on every revocation, rotation,
role change or disablement; each replica watches the bucket and drops the cached credentials at once, so a
revoked key stops working everywhere within milliseconds instead of after the verifier's cache TTL. A
replica that was disconnected re-reads the bucket when its watcher resumes (the bucket keeps the latest
change per id for a day, longer than any cache lifetime).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.common import kv, kv_guard, subjects

log = logging.getLogger(__name__)

KEEP_S = 24 * 3600.0

Invalidate = Callable[[str, str], None]


async def changes_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_AUTH_CHANGES, ttl_s=KEEP_S)


class AuthChanges:
    def __init__(self, kv: KeyValue, invalidate: Invalidate) -> None:
        self._kv = kv
        self._invalidate = invalidate
        self._task: asyncio.Task[None] | None = None

    async def announce(self, kind: str, ident: str) -> None:
        """Drops the local cache now and tells every other replica."""
        self._invalidate(kind, ident)
        await self._kv.put(f"{kind}.{ident}", str(time.time()).encode())

    async def start(self) -> None:
        watcher = await kv_guard.watch(self._kv)  # a forged revision drops no cache
        self._task = asyncio.create_task(self._follow(watcher), name="auth-changes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:  # the end of the initial values
                continue
            kind, _, ident = entry.key.partition(".")
            if ident:
                self._invalidate(kind, ident)
