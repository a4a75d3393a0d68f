"""Shared fast state in JetStream KV: buckets, safe keys and compare-and-set updates.

Replicas that share a value (a breaker, a rate-limit bucket, a routing statistic) read it with its
revision, compute the new value, and write it only if nobody wrote in between; on a conflict they read
again. So concurrent updates are never lost and limits hold across replicas.

A process remembers the value and revision of its own last write to a key, and its next change starts
from them: when nobody wrote in between (one replica, or a key mostly this replica's), the update is one
round trip instead of a read and a write; otherwise the write is refused and the change is retried on a
fresh read, as before. A change that writes nothing is always decided on a fresh read (a remembered value
may be stale, and nothing would check it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import random
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from switchyard.common import kv_guard, provisioning
from switchyard.common.background import cancel
from switchyard.common.config import CommonSettings
from switchyard.common.errors import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")
_UNSAFE = re.compile(r"[^-_=.a-zA-Z0-9]")
CAS_ATTEMPTS = 25
KEEP_KEYS = 4096  # remembered (value, revision) per bucket


async def bucket(
    js: JetStreamContext,
    name: str,
    *,
    history: int = 1,
    ttl_s: float | None = None,
    replicas: int | None = None,
    description: str | None = None,
) -> KeyValue:
    """The bucket `name`, created on first use (with `ttl_s`: its entries expire that long after their last
    write), on `replicas` servers: SWITCHYARD_STREAM_REPLICAS, as the streams (`bus.ensure_streams`); a
    bucket made with another number is moved to it (NATS changes a stream's replicas in place). Each
    service opens its buckets at start, so every service must agree on it, as for the streams. With
    SWITCHYARD_BUS_PROVISIONED it is only opened, and must exist as configured (provisioning.py)."""
    settings = CommonSettings()
    if replicas is None:
        replicas = settings.stream_replicas
    if provisioning.provisioned_only(settings):
        await provisioning.check(
            js,
            provisioning.kv_config(
                name, history=history, ttl_s=ttl_s, replicas=replicas, description=description
            ),
        )
        return await js.key_value(name)
    try:
        found = await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(
            bucket=name, history=history, ttl=ttl_s, replicas=replicas, description=description
        )
    config = (await js.stream_info(f"KV_{name}")).config
    if (config.num_replicas or 1) != replicas:
        log.info("KV bucket %s: %d replicas, was %d", name, replicas, config.num_replicas or 1)
        config.num_replicas = replicas
        await js.update_stream(config)
    return found


@functools.lru_cache(maxsize=KEEP_KEYS)
def safe_key(name: str) -> str:
    """A KV key for any name (model ids hold '/' and ':'): readable, and unique thanks to a short hash.
    Remembered: the same few model and provider names come back on every call (a regex and a SHA-256 were
    2 % of an executor's samples at concurrency 1)."""
    cleaned = _UNSAFE.sub("_", name)
    if cleaned == name:
        return name
    return f"{cleaned}.{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def tenant_key(tenant_id: str, name: str) -> str:
    """A KV key for a tenant's `name` (a tool call id, a task id: whatever its sender chose): a hash, so
    another tenant's same name finds nothing, neither appears in clear, and any name is a valid key."""
    return hashlib.sha256(f"{tenant_id}\x00{name}".encode()).hexdigest()


async def read(kv: KeyValue, key: str) -> tuple[bytes | None, int | None]:
    """(value, revision), or (None, None) when the key does not exist."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None, None
    return entry.value, entry.revision


# Writers of one key in this process take turns, so a conflict can only come from another process: under
# load, concurrent tasks updating one model's bucket otherwise collided with each other up to CAS_ATTEMPTS
# times (two round trips each) and gave up.
_LOCKS: dict[tuple[int, str], asyncio.Lock] = {}


Reader = Callable[[KeyValue, str], Awaitable[tuple[bytes | None, int | None]]]


async def update(
    kv: KeyValue, key: str, change: Callable[[bytes | None], tuple[bytes | None, T]], *, reader: Reader = read
) -> T:
    """Compare-and-set: `change(current)` returns (new value or None to leave it, result); retried on a
    conflict with another writer. Returns the result of the `change` call that took effect. `reader`
    reads the current (value, revision): `kv_guard.read_over` takes a forged revision for no value."""
    lock = _LOCKS.setdefault((id(kv), key), asyncio.Lock())
    try:
        async with lock:
            return await _update(kv, key, change, reader)
    finally:
        if not lock.locked() and not getattr(lock, "_waiters", None):
            _LOCKS.pop((id(kv), key), None)


async def _update(
    kv: KeyValue, key: str, change: Callable[[bytes | None], tuple[bytes | None, T]], read: Reader
) -> T:
    known = _KNOWN.setdefault(kv, OrderedDict())
    remembered = known.get(key)
    fresh = remembered is None
    current, revision = remembered if remembered is not None else await read(kv, key)
    for attempt in range(CAS_ATTEMPTS):
        new, result = change(current)
        if new is None:
            if not fresh:  # decided on a remembered value: decide again on the stored one
                current, revision = await read(kv, key)
                fresh = True
                continue
            return result
        try:
            if revision is None:
                written = await kv.create(key, new)
            else:
                written = await kv.update(key, new, last=revision)
        except KeyWrongLastSequenceError:
            known.pop(key, None)
            if attempt:  # the first conflict is usually a remembered revision: read again at once
                await asyncio.sleep(random.random() * 0.002 * attempt)
            current, revision = await read(kv, key)
            fresh = True
            continue
        known[key] = (new, written)
        known.move_to_end(key)
        while len(known) > KEEP_KEYS:
            known.popitem(last=False)
        return result
    raise TransientError(f"KV {key}: too many concurrent writers, gave up after {CAS_ATTEMPTS} attempts")


# Per bucket object (weakly: a bucket that goes away takes its entries along): key -> (value, revision)
# of this process's last write.
_KNOWN: weakref.WeakKeyDictionary[KeyValue, OrderedDict[str, tuple[bytes, int]]] = weakref.WeakKeyDictionary()


async def keys(kv: KeyValue, prefix: str = "") -> list[str]:
    """The bucket's keys (a deleted key too, until its marker goes), from the stream's per-subject counts:
    one request, which the server answers with at most 100,000 subjects (the buckets read this way hold a
    key per model, provider or breaker). `prefix`: only the keys under it (`a.` for `a.<anything>`).

    Not nats-py's `KeyValue.keys()`: it opens a watch and takes "nothing pending" from a consumer-info
    reply that can overtake the values already on their way, so now and then it finds a full bucket empty
    (a router that read the providers' announcements that way had no provider for a task, in CI)."""
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{kv._pre}{prefix}>")
    return [subject[len(kv._pre) :] for subject in info.state.subjects or {}]


async def read_all(kv: KeyValue) -> dict[str, bytes]:
    """Every key's value (deleted keys left out, and forged revisions: kv_guard)."""
    out: dict[str, bytes] = {}
    for key in await keys(kv):
        value, _ = await kv_guard.read_over(kv, key)
        if value:
            out[key] = value
    return out


async def unwatch(task: asyncio.Task[None] | None, watcher: KeyValue.KeyWatcher | None) -> None:
    """Stops a watch: the task following it, then its consumer on the server (gone already after a
    reconnect: nothing to stop)."""
    await cancel(task)
    if watcher is not None:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]


class Mirror:
    """A bucket's values as the server announces them (a KV watch), read without a round trip.

    An entry is trusted for `ttl_s` after the watch delivered it or it was read; past that (a key nobody
    changed, or a watch that stopped delivering after a reconnect) `get` reads the server again. So a
    change another replica writes is seen as soon as the watch delivers it (about a millisecond here), and
    never later than `ttl_s` whatever happens to the watch. Writes still go through `update`.

    Read through kv_guard: a revision the server stored on a client's behalf is skipped, and the value
    held for its key stays (trusted again for `ttl_s`; none held: no value).
    """

    def __init__(
        self,
        bucket: KeyValue,
        *,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_forged: Callable[[str], None] | None = None,
    ):
        self._kv = bucket
        self._on_forged = on_forged  # told the key of each forged revision its watch skips (kv_repair)
        self._ttl_s = ttl_s
        self._clock = clock
        self._values: dict[str, tuple[bytes | None, int, float]] = {}  # key -> (value, revision, seen at)
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._watcher = await kv_guard.watch(self._kv, on_forged=self._on_forged)
            self._task = asyncio.create_task(self._follow(self._watcher), name="kv-mirror")

    async def stop(self) -> None:
        await unwatch(self._task, self._watcher)
        self._task, self._watcher = None, None

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:  # the end of the initial values
                continue
            gone = entry.operation in (KV_DEL, KV_PURGE)
            self._keep(entry.key, None if gone else entry.value, entry.revision or 0)
        log.warning(
            "KV mirror of %s stopped: reads go to the server every %.1f s", self._kv._name, self._ttl_s
        )

    def _keep(self, key: str, value: bytes | None, revision: int) -> None:
        known = self._values.get(key)
        if known is not None and known[1] > revision:  # a newer value arrived first: keep it
            return
        if len(self._values) > KEEP_KEYS:
            self._values.clear()
        self._values[key] = (value, revision, self._clock())

    def held(self, key: str) -> bytes | None:
        """The last real value seen of `key` (None: none, or deleted), however old."""
        known = self._values.get(key)
        return None if known is None else known[0]

    async def read_over(self, bucket: KeyValue, key: str) -> tuple[bytes | None, int | None]:
        """`kv_guard.read_over` (a reader for `update`) taking a forged revision for the value held."""
        try:
            return await kv_guard.read(bucket, key)
        except kv_guard.ForgedEntry as forged:
            return self.held(key), forged.revision

    async def get(self, key: str) -> bytes | None:
        known = self._values.get(key)
        if known is not None and self._clock() - known[2] < self._ttl_s:
            return known[0]
        try:
            value, revision = await kv_guard.read(self._kv, key)
        except kv_guard.ForgedEntry:
            if known is None:
                return None
            self._values[key] = (known[0], known[1], self._clock())
            return known[0]
        self._keep(key, value, revision or 0)
        return value


async def purge_matching(kv: KeyValue, pattern: str) -> int:
    """Purges every key matching `pattern` (a subject filter over the keys: `a.b.*`, `a.>`), history and
    markers too (nothing of them stays in the stream, and no delete marker is written); how many messages
    that removed (with history 1: the keys, deleted ones' markers included)."""
    js = kv._js
    reply = await js._api_request(
        f"{js._prefix}.STREAM.PURGE.{kv._stream}",
        json.dumps({"filter": f"{kv._pre}{pattern}"}).encode(),
        timeout=js._timeout,
    )
    return int(reply.get("purged") or 0)
