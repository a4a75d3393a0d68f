"""The global emergency throttle: one KV key every gateway replica watches, so an operator's switch
applies everywhere within milliseconds and survives restarts."""

from __future__ import annotations

import asyncio
import logging

import orjson
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.common import kv, kv_guard, kv_repair, subjects

log = logging.getLogger(__name__)

THROTTLE_KEY = "throttle"


async def control_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_GATEWAY_CONTROL, history=5)


class Control:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.throttle: int | None = None  # global requests per minute while the throttle is on
        self._held: bytes | None = None  # the last real value of the key (None: none seen)
        self._task: asyncio.Task[None] | None = None
        # a forged revision (kv_guard) is written over with the value held: 5 of them would push the
        # operator's switch out of the history, and a replica started since would run unthrottled
        self._repairs = kv_repair.Repairs(kv, lambda _key: self._held, name="gateway-control-repairs")

    async def set_throttle(self, requests_per_min: int | None) -> None:
        self.throttle = requests_per_min
        self._held = orjson.dumps({"requests_per_min": requests_per_min})
        await self._kv.put(THROTTLE_KEY, self._held)

    async def start(self) -> None:
        # its history (5 revisions): a forged newest one is skipped, and the last one set stays in force
        watcher = await kv_guard.watch(
            self._kv, THROTTLE_KEY, include_history=True, on_forged=self._repairs.forged
        )
        self._task = asyncio.create_task(self._follow(watcher), name="gateway-control")
        self._repairs.start()

    async def stop(self) -> None:
        await self._repairs.stop()
        if self._task is not None:
            self._task.cancel()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:
                continue
            try:
                value = orjson.loads(entry.value) if entry.value else {}
                self.throttle = value.get("requests_per_min")
                self._held = entry.value or None
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("ignoring an invalid throttle value: %r", entry.value)
