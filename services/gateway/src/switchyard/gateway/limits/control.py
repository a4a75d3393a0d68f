"""The global emergency throttle: one KV key every gateway replica watches, so an operator's switch
applies everywhere within milliseconds and survives restarts."""

from __future__ import annotations

import asyncio
import logging

import orjson
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.common import kv, kv_guard, subjects

log = logging.getLogger(__name__)

THROTTLE_KEY = "throttle"


async def control_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_GATEWAY_CONTROL, history=5)


class Control:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.throttle: int | None = None  # global requests per minute while the throttle is on
        self._task: asyncio.Task[None] | None = None

    async def set_throttle(self, requests_per_min: int | None) -> None:
        self.throttle = requests_per_min
        await self._kv.put(THROTTLE_KEY, orjson.dumps({"requests_per_min": requests_per_min}))

    async def start(self) -> None:
        # its history (5 revisions): a forged newest one is skipped, and the last one set stays in force
        watcher = await kv_guard.watch(self._kv, THROTTLE_KEY, include_history=True)
        self._task = asyncio.create_task(self._follow(watcher), name="gateway-control")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:
                continue
            try:
                value = orjson.loads(entry.value) if entry.value else {}
                self.throttle = value.get("requests_per_min")
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("ignoring an invalid throttle value: %r", entry.value)
