"""Integer counters in JetStream KV, changed only by compare-and-set, so limits hold across replicas.

`add` applies a delta unless the result would pass a ceiling, as one atomic step: it reads the value and
its revision, then writes with `update(..., last=revision)`; a concurrent writer makes the write fail and
the step is retried on the fresh value. Within one replica a lock per key queues the writers, so retries
only come from other replicas. The last value seen is kept, so the usual step is one round trip.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

MAX_ATTEMPTS = 200
KEEP_KEYS = 4096


class CounterContention(Exception):
    """The key kept changing under us for MAX_ATTEMPTS tries (a busy shared key under heavy load)."""


async def counter_bucket(js: JetStreamContext, name: str, *, ttl_s: float) -> KeyValue:
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=name, history=1, ttl=ttl_s)


class Counters:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._known: OrderedDict[str, tuple[int, int]] = OrderedDict()  # key -> (value, revision)
        self._locks: dict[str, asyncio.Lock] = {}

    async def read(self, key: str) -> tuple[int, int]:
        """(value, revision); a missing key is (0, 0)."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return 0, 0
        return int(entry.value or b"0"), entry.revision or 0

    async def add(self, key: str, delta: int, *, ceiling: int | None = None) -> tuple[bool, int]:
        """Adds `delta` unless the new value would exceed `ceiling`. Returns (applied, value now)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                return await self._add(key, delta, ceiling)
            finally:
                if not lock._waiters and len(self._locks) > KEEP_KEYS:  # type: ignore[attr-defined]
                    self._locks.pop(key, None)

    async def _add(self, key: str, delta: int, ceiling: int | None) -> tuple[bool, int]:
        cached = self._known.get(key)
        fresh = cached is None
        value, revision = cached if cached is not None else await self.read(key)
        for attempt in range(MAX_ATTEMPTS):
            new = max(value + delta, 0)
            if delta > 0 and ceiling is not None and new > ceiling:
                if not fresh:  # values also go down (releases): refuse only on a fresh read
                    value, revision = await self.read(key)
                    fresh = True
                    continue
                self._remember(key, value, revision)
                return False, value
            try:
                if revision == 0:
                    revision = await self._kv.create(key, str(new).encode())
                else:
                    revision = await self._kv.update(key, str(new).encode(), last=revision)
            except KeyWrongLastSequenceError:
                if attempt > 4:
                    await asyncio.sleep(random.uniform(0, 0.002 * attempt))
                value, revision = await self.read(key)
                fresh = True
                continue
            self._remember(key, new, revision)
            return True, new
        raise CounterContention(f"counter {key} kept changing for {MAX_ATTEMPTS} attempts")

    def _remember(self, key: str, value: int, revision: int) -> None:
        self._known[key] = (value, revision)
        self._known.move_to_end(key)
        while len(self._known) > KEEP_KEYS:
            self._known.popitem(last=False)
