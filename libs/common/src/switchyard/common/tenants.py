"""The tenant registry: which `tenant_id`s are organisations, so the pipeline refuses a task of any other.

The pipeline services do not read the gateway's database. The gateway (and, on a bus-only deployment,
`switchyard tenants`) keeps the organisations in the KV bucket `switchyard-tenants`: `t.<tenant>` is an
organisation, `{"tenant_id", "name", "status": "active" | "erased", "at"}`, and `kept` says the registry is
kept (written by the gateway once its start-up sync from the database is done, or by the first
`switchyard tenants add`). The classifier (the first to read a task) and the executor (the last before a
provider is called) ask `TenantCheck.refusal`: a tenant it knows is active costs a dictionary look-up (the
bucket is followed with a watch); one it does not know is read from the server before it is refused (one
created a millisecond ago may not have reached the watch yet).

Until the registry is kept (a deployment upgraded with no gateway started yet; the pipeline's own tests,
which start no gateway) every tenant passes, as before: `SWITCHYARD_TENANT_CHECK=on` refuses every tenant
the registry does not list even then, `off` never checks.

Every read goes through kv_guard: a revision the server stored on a client's behalf (any user that may
read a bucket can have one written, README "Trust") is skipped, so a reader keeps what it knew of that
tenant, and a writer's compare-and-set takes it for no value and writes over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import nats
import orjson
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from switchyard.common import bus, kv, kv_guard, subjects
from switchyard.common.errors import SwitchyardError, TransientError
from switchyard.common.events import TaskFailed, TaskSubmitted

log = logging.getLogger(__name__)

Mode = Literal["auto", "on", "off"]
Status = Literal["active", "erased"]
KEPT = "kept"
_PREFIX = "t."
# A known tenant's entry is trusted this long after the watch delivered it or it was read; then read again,
# so a watch that stopped delivering (a reconnect) cannot keep an erased tenant running for more than this.
TRUST_S = 60.0


class UnknownTenant(SwitchyardError):
    """A task of a tenant that is no organisation of this deployment (or one erased): never retried."""

    code = "unknown_tenant"


@dataclass(frozen=True, slots=True)
class Entry:
    tenant_id: str
    status: Status
    name: str = ""
    at: str = ""

    def dumps(self) -> bytes:
        return orjson.dumps(
            {"tenant_id": self.tenant_id, "name": self.name, "status": self.status, "at": self.at}
        )


def key_of(tenant_id: str) -> str:
    return _PREFIX + kv.safe_key(tenant_id)


def parse(value: bytes | None) -> Entry | None:
    """An entry as stored, or None for a deleted key or a value that is not one."""
    if not value:
        return None
    try:
        data = orjson.loads(value)
        status = data["status"]
        if status not in ("active", "erased"):
            return None
        return Entry(str(data["tenant_id"]), status, str(data.get("name", "")), str(data.get("at", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def registry_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_TENANTS)


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def put(bucket: KeyValue, entry: Entry) -> bool:
    """Writes `entry` unless the bucket holds the same already; an erased tenant stays erased (an add, a
    sync or a key's authentication racing the erasure cannot bring it back: compare-and-set). Whether it
    wrote."""

    def change(current: bytes | None) -> tuple[bytes | None, bool]:
        known = parse(current)
        if known is not None and known.status == "erased" and entry.status == "active":
            return None, False
        if known is not None and known.status == entry.status and entry.name in ("", known.name):
            return None, False
        name = entry.name or (known.name if known is not None else "")
        return Entry(entry.tenant_id, entry.status, name, entry.at or _now()).dumps(), True

    return await kv.update(bucket, key_of(entry.tenant_id), change, reader=kv_guard.read_over)


async def register(bucket: KeyValue, tenant_id: str, *, name: str = "") -> bool:
    return await put(bucket, Entry(tenant_id, "active", name))


async def erase(bucket: KeyValue, tenant_id: str, *, name: str = "") -> bool:
    return await put(bucket, Entry(tenant_id, "erased", name))


async def mark_kept(bucket: KeyValue, *, by: str) -> None:
    """From now on the pipeline refuses the tenants the registry does not list (mode `auto`)."""
    current, _ = await kv_guard.read_over(bucket, KEPT)
    if current is None:
        await bucket.put(KEPT, orjson.dumps({"by": by, "at": _now()}))


async def entries(bucket: KeyValue) -> list[Entry]:
    """Every tenant of the registry (a read per key: exact, for listings)."""
    found = [parse((await kv_guard.read_over(bucket, key))[0]) for key in await kv.keys(bucket, _PREFIX)]
    return sorted((e for e in found if e is not None), key=lambda e: e.tenant_id)


GLIMPSE_IDLE_S = 5.0  # the server drops a glimpse's consumer this long after it stopped


async def glimpse(bucket: KeyValue) -> dict[str, Entry]:
    """The registry's tenants in one pass (a watch's initial values: 10,000 in ~0.4 s, where `entries`
    takes a round trip each), best effort: nats-py's watch may end its initial values early (kv.keys), so
    a caller writes what it misses through `put`, which reads the stored value first."""
    found: dict[str, Entry] = {}
    watcher = await kv_guard.watch(bucket, f"{_PREFIX}>", idle_s=GLIMPSE_IDLE_S)
    try:
        async for item in watcher:
            if item is None:  # the end of the initial values
                break
            entry = None if item.operation in (KV_DEL, KV_PURGE) else parse(item.value)
            if entry is not None:
                found[entry.tenant_id] = entry
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return found


async def is_kept(bucket: KeyValue) -> bool:
    """Raises kv_guard.ForgedEntry when the marker's newest revision is forged."""
    value, _ = await kv_guard.read(bucket, KEPT)
    return value is not None


class TenantCheck:
    """Refuses a task whose tenant the registry does not list as active (see the module)."""

    def __init__(
        self,
        bucket: Callable[[], KeyValue] | None,
        *,
        mode: Mode = "auto",
        trust_s: float = TRUST_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = bucket
        self.mode: Mode = mode if bucket is not None else "off"
        self._trust_s = trust_s
        self._clock = clock
        self._known: dict[str, tuple[Status, float]] = {}  # tenant -> (status, seen at)
        self._tokens: dict[str, str] = {}  # subject token -> tenant (`owner_of`)
        self._kept: tuple[bool, float] = (False, float("-inf"))
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Reads the registry whole (the watch's initial values), then follows it."""
        if self.mode == "off" or self._bucket is None or self._task is not None:
            return
        self._watcher = await kv_guard.watch(self._bucket())
        loaded = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._follow(self._watcher, loaded), name="tenant-registry")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10.0):
                await asyncio.shield(loaded)
        log.info(
            "tenant registry: %d organisations, %s (SWITCHYARD_TENANT_CHECK=%s)",
            sum(1 for status, _ in self._known.values() if status == "active"),
            "kept" if self._kept[0] else "not kept yet: every tenant passes",
            self.mode,
        )

    async def stop(self) -> None:
        await kv.unwatch(self._task, self._watcher)
        self._task, self._watcher = None, None

    async def _follow(self, watcher: KeyValue.KeyWatcher, loaded: asyncio.Future[None]) -> None:
        async for entry in watcher:
            if entry is None:  # the end of the initial values
                if not loaded.done():
                    loaded.set_result(None)
                continue
            gone = entry.operation in (KV_DEL, KV_PURGE)
            if entry.key == KEPT:
                self._kept = (not gone, self._clock())
            elif entry.key.startswith(_PREFIX):
                self._learn(None if gone else parse(entry.value))
        log.warning("the tenant registry's watch stopped: entries are read again every %.0f s", self._trust_s)

    def _learn(self, entry: Entry | None) -> None:
        if entry is not None:
            self._known[entry.tenant_id] = (entry.status, self._clock())
            self._tokens.setdefault(subjects.tenant_token(entry.tenant_id), entry.tenant_id)

    def owner_of(self, token: str) -> str | None:
        """The active organisation whose subject token is `token` (`subjects.tenant_token`), as this
        replica knows the registry; None when it knows none (no registry kept, or the check `off`)."""
        tenant = self._tokens.get(token)
        known = self._known.get(tenant) if tenant is not None else None
        return tenant if known is not None and known[0] == "active" else None

    async def refusal(self, tenant_id: str) -> str | None:
        """Why a task of `tenant_id` is refused, or None when it may run."""
        if self.mode == "off":
            return None
        now = self._clock()
        known = self._known.get(tenant_id)
        if known is not None and now - known[1] < self._trust_s:
            status: Status | None = known[0]
        elif self.mode == "auto" and not await self._registry_kept(now):
            return None  # nobody keeps a registry here (yet): no round trip either
        else:
            try:
                status = await self._read(tenant_id)
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                if known is None:  # redelivered with backoff: the registry may be back by then
                    raise TransientError(f"the tenant registry cannot be read: {exc!r}") from exc
                # the registry's bucket unreachable (its server lost): what the watch last said holds, rather
                # than every task of every tenant failing until it is back
                log.warning(
                    "tenant registry unreadable (%r): %s is taken as %s still", exc, tenant_id, known[0]
                )
                status = known[0]
        if status == "active":
            return None
        if status == "erased":
            return f"organisation {tenant_id!r} was erased: its tasks are not run"
        return (
            f"tenant {tenant_id!r} is no organisation of this deployment (the tenant registry "
            f"{subjects.KV_TENANTS} does not list it): give an organisation's id "
            "(GET /v1/admin/organization), or register it (switchyard tenants add)"
        )

    async def _read(self, tenant_id: str) -> Status | None:
        assert self._bucket is not None
        try:
            value, _ = await kv_guard.read(self._bucket(), key_of(tenant_id))
        except kv_guard.ForgedEntry:  # not a writer's: what this replica knew holds (nothing: refused)
            known = self._known.get(tenant_id)
            if known is None:
                return None
            self._known[tenant_id] = (known[0], self._clock())
            return known[0]
        entry = parse(value)
        if entry is None:  # not cached: one created a moment later is read again, not refused from memory
            self._known.pop(tenant_id, None)
            return None
        self._learn(entry)
        return entry.status

    async def _registry_kept(self, now: float) -> bool:
        kept, seen = self._kept
        if kept or now - seen < self._trust_s:
            return kept
        assert self._bucket is not None
        try:
            self._kept = (await is_kept(self._bucket()), now)
        except (nats.errors.Error, OSError, TimeoutError, kv_guard.ForgedEntry) as exc:
            log.warning(
                "tenant registry unreadable (%r): taken as %s still", exc, "kept" if kept else "not kept"
            )
            self._kept = (kept, now)
        return self._kept[0]

    async def check(self, tenant_id: str) -> None:
        """Raises UnknownTenant for a task that must not run."""
        reason = await self.refusal(tenant_id)
        if reason is not None:
            raise UnknownTenant(reason)


async def refuse(
    check: TenantCheck, publisher: bus.EventPublisher, task: TaskSubmitted, *, answer_id: str
) -> None:
    """Raises UnknownTenant (dead-lettered by the consumer, never retried) for a task whose tenant the
    registry refuses, once its submitter is answered on its result subject (`switchyard.task.failed.v1`,
    `unknown_tenant`) rather than left to wait out its timeout. `answer_id`: the answer's event id, derived
    from the event refused (a redelivery's answer is stored once)."""
    reason = await check.refusal(task.tenant_id)
    if reason is None:
        return
    log.warning("task %s refused: %s", task.task_id, reason)
    failed = TaskFailed(
        task_id=task.task_id,
        tenant_id=task.tenant_id,
        user_id=task.user_id,
        error_code=UnknownTenant.code,
        error_message=reason,
        failed_at=datetime.now(UTC),
    )
    await publisher.publish(
        failed,
        subject=subjects.result_subject(task.tenant_id, task.task_id),
        event_id=answer_id,
        tenant_id=task.tenant_id,
        event_subject=task.task_id,
    )
    raise UnknownTenant(reason)


def named_in(raw: bytes) -> str | None:
    """The `tenant_id` an event's data names (None: none, or no JSON event)."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    data = event.get("data") if isinstance(event, dict) else None
    tenant = data.get("tenant_id") if isinstance(data, dict) else None
    return tenant if isinstance(tenant, str) else None
