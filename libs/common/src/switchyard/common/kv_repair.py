"""A bucket's writer puts its own value back over a forged revision (common/kv_guard.py) at once.

A revision the JetStream server stored on a client's behalf becomes the key's stored value (a bucket of
history 1 keeps only it): readers that held the real value keep it, but a reader started since (a new
replica, a router reading the bucket anew each second) reads no value for the key until its writer
writes it again. A writer that watches the bucket learns of the forgery within a round trip and writes
over it with a compare-and-set on the forged revision, so of several replicas one writes and the others'
writes are refused; a key written meanwhile by anyone is left alone.

- `Repairs`: the rewriting, from a `value_of(key)` the writer gives (its memory or its database); at most
  one pass a `REPAIR_GAP_S` however fast a forger forges, and only the keys forged since the last pass.
- `Keeper`: for a bucket whose writers hold no other source of truth than the bucket itself (breakers,
  rate-limit buckets, routing statistics): a watch (kv_guard's) that remembers each key's last real value
  and gives it to `Repairs`; `read_over` is kv_guard's with that value in place of a forged one, so a
  writer's next compare-and-set continues the real state instead of starting over.
- `Remembered`: compare-and-set without a watch (the gateway's counters and slot tables, written on the
  request path, where a watch would hear every other replica's write): a forged revision is read as the
  last real value this replica read or wrote of the key, and its write replaces the forged one.

A key forged before the writer's watch saw a real value of it has nothing to restore: it stays forged
(readers read no value) until written again, and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from switchyard.common import kv, kv_guard
from switchyard.common.background import cancel

log = logging.getLogger(__name__)

REPAIR_GAP_S = 0.2  # a forger sets the pace of the repairs: at most one pass this often
KEEP_KEYS = 65_536  # a keeper's remembered values (a key per model, provider or breaker: far fewer)

T = TypeVar("T")
ValueOf = Callable[[str], Awaitable[bytes | None] | bytes | None]


class Repairs:
    """Keys told as forged (`forged`, a kv_guard watch's `on_forged`) rewritten by a background task with
    `value_of(key)` (None: nothing to restore, left alone). `start` it; `stop` at shutdown."""

    def __init__(self, bucket: KeyValue, value_of: ValueOf, *, name: str, gap_s: float = REPAIR_GAP_S):
        self._bucket = bucket
        self._value_of = value_of
        self._name = name
        self._gap_s = gap_s
        self._due: dict[str, None] = {}  # keys forged since the last pass, in order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # rewrites that took effect

    def forged(self, key: str) -> None:
        self._due[key] = None
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._gap_s)  # also lets the watch hand over what came before the forgery
            self._wake.clear()
            due, self._due = list(self._due), {}
            for key in due:
                try:
                    await self.rewrite(key)
                except Exception as exc:  # the bus, briefly: the next forgery (or write) tries again
                    log.warning(
                        "KV %s/%s not restored: %s: %s", self._bucket._name, key, type(exc).__name__, exc
                    )

    async def rewrite(self, key: str) -> bool:
        """Writes the writer's value over the key's newest revision if it is forged (True when written)."""
        try:
            await kv_guard.read(self._bucket, key)
            return False  # written since: nothing to repair
        except kv_guard.ForgedEntry as forged:
            revision = forged.revision
        value = self._value_of(key)
        if not isinstance(value, bytes | None):
            value = await value
        if not value:
            log.warning(
                "KV %s/%s: forged revision %s left in place, this writer holds no value of it",
                self._bucket._name,
                key,
                revision,
            )
            return False
        try:
            await self._bucket.update(key, value, last=revision)
        except KeyWrongLastSequenceError:
            return False  # another replica restored it first, or a writer wrote it
        self.written += 1
        log.info(
            "KV %s/%s: forged revision %s written over with the writer's value",
            self._bucket._name,
            key,
            revision,
        )
        return True


class Keeper:
    """A watch of the whole bucket remembering each key's last real value, restoring it over a forged
    revision (`Repairs`). `start`, then `stop` at shutdown."""

    def __init__(self, bucket: KeyValue, *, name: str, gap_s: float = REPAIR_GAP_S) -> None:
        self._bucket = bucket
        self._name = name
        self._last: dict[str, bytes] = {}
        self.repairs = Repairs(bucket, self._last.get, name=f"{name}-repairs", gap_s=gap_s)
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._watcher = await kv_guard.watch(self._bucket, on_forged=self.repairs.forged)
        self._task = asyncio.create_task(self._follow(self._watcher), name=self._name)
        self.repairs.start()

    async def stop(self) -> None:
        await self.repairs.stop()
        await cancel(self._task)
        self._task = None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:  # at shutdown the connection may be gone already
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:
                continue
            if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                self._last.pop(entry.key, None)
            elif entry.key in self._last or len(self._last) < KEEP_KEYS:
                self._last[entry.key] = entry.value

    def held(self, key: str) -> bytes | None:
        """The key's last real value this watch saw (None: none, or deleted)."""
        return self._last.get(key)

    async def read_over(self, bucket: KeyValue, key: str) -> tuple[bytes | None, int | None]:
        """`kv_guard.read_over` (a `kv.update` reader) taking a forged revision for the last real value."""
        try:
            return await kv_guard.read(bucket, key)
        except kv_guard.ForgedEntry as forged:
            return self._last.get(key), forged.revision


class Remembered:
    """`kv.update` through kv_guard for one replica's keys: a forged revision is taken for the last real
    value this replica read or wrote of the key (None: none known), so a forger's value is never the
    start of a change, and the change's write replaces it."""

    def __init__(self, *, keep: int = kv.KEEP_KEYS) -> None:
        self._known: OrderedDict[str, bytes] = OrderedDict()
        self._keep = keep

    def _seen(self, key: str, value: bytes | None) -> None:
        if value is None:
            return
        self._known[key] = value
        self._known.move_to_end(key)
        while len(self._known) > self._keep:
            self._known.popitem(last=False)

    async def read(self, bucket: KeyValue, key: str) -> tuple[bytes | None, int | None]:
        """(value, revision) as `kv_guard.read`, a forged revision read as the value known here."""
        try:
            value, revision = await kv_guard.read(bucket, key)
        except kv_guard.ForgedEntry as forged:
            return self._known.get(key), forged.revision
        self._seen(key, value)
        return value, revision

    async def update(
        self, bucket: KeyValue, key: str, change: Callable[[bytes | None], tuple[bytes | None, T]]
    ) -> T:
        written: list[bytes | None] = [None]

        def tracked(current: bytes | None) -> tuple[bytes | None, T]:
            new, result = change(current)
            written[0] = new  # the last call's is what was written (None: nothing)
            return new, result

        result = await kv.update(bucket, key, tracked, reader=self.read)
        self._seen(key, written[0])
        return result
