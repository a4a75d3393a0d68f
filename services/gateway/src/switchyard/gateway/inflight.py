"""Admissions in flight, listed in KV, so that a gateway replica that dies does not strand them.

A task reserves its worst case of the shared token and spend counters when it is admitted, and its
replica gives back what it did not use when the result arrives (`admission`). A replica killed in
between would leave those reservations counted until the counters' windows end: a day for tokens and
user budgets, the rest of the month for an organisation's budget.

So every replica keeps, in the KV bucket `switchyard-gateways` under its own key, the tasks it has
admitted and not settled: each task's id, its deadline and what it reserved of which counters. The
entry is rewritten `soon_s` after a task is admitted (the admissions of that time share the write), at
least every `beat_s`, and always before this replica gives units back to a counter store
(`Leases.before_return`), so **a task on the list has given nothing back to any store**. A replica whose
entry has not been rewritten for `ttl_s` (plus `skew_s` for the replicas' clocks) is dead: another
replica claims its entry by compare-and-set (`Orphans`), waits for each listed task's result (past its
deadline it times the task out, and waits `SETTLE_WAIT_S` more, as the task's own gateway would), and
settles it as that gateway would have; it takes the task off the entry before it gives anything back,
so a settler that dies in between strands that one task's units (counted, never counted twice), and
another replica claims what is left. A replica that finds its entry claimed has been taken for dead: it
gives nothing back to any store from then on, and stops (`on_fenced`). A replica that stops with tasks
still listed (streams outlasting its graceful stop) hands them over: its last write marks the entry
stopped and expired, so another replica claims it without waiting out `ttl_s` (even one that has just
started, and judges no silent replica yet), and counts them apart (`cause="handed_over"`: a rolling
restart, not a replica lost).

What stays stranded, bounded: the units a dead replica held unused in its leases (at most one spare
chunk per counter, `switchyard.common.leases`), tasks admitted after its last write (`soon_s` of
admissions), and tasks it settled in memory and had not handed back. Concurrency slots need none of
this: their table expires by itself (`SlotTable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchyard.common import kv, subjects
from switchyard.common.background import Background, cancel
from switchyard.common.bus import EventPublisher
from switchyard.common.events import TaskCompleted, TaskFailed, TaskTimedOut
from switchyard.common.leases import Store
from switchyard.common.policy import Policy
from switchyard.common.policy_source import PolicySource, current_of
from switchyard.common.wants import Want
from switchyard.gateway.admission import Pass, charged, unused
from switchyard.gateway.metrics import ORPHANS
from switchyard.gateway.tasks import SETTLE_WAIT_S, record, stored_result

log = logging.getLogger(__name__)

KEEP_S = 7 * 24 * 3600.0  # an entry nobody settled (no replica ran for a week) goes with the bucket's max age
LOOK_MAX_S = 30.0  # a listed task still running is looked for (its stored result) at most this far apart
WINDOWS, SPEND = "w", "s"  # the stores a listed task holds units of: token windows, spend


class Fenced(Exception):
    """This replica's entry was claimed by another: it was taken for dead, and may give nothing back."""


async def gateways_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_GATEWAYS, ttl_s=KEEP_S)


def replica_name(instance: str) -> str:
    """A name no other process has had: a restarted replica must not take over its own dead entry."""
    return f"{kv.safe_key(instance)}-{uuid.uuid4().hex[:8]}"


def _listed(admitted: Pass, *, task_id: str, tenant_id: str, at: float, ends_by: float) -> bytes:
    """A task as its entry lists it (JSON, made once at admission): its id and tenant, when it was
    admitted, until when its result is waited for (and SETTLE_WAIT_S more), and what it holds."""
    task = {"task": task_id, "tenant": tenant_id, "at": at, "ends_by": ends_by, **_held(admitted)}
    return orjson.dumps(task)


def _held(admitted: Pass) -> dict[str, Any]:
    """What a task holds, as listed: tokens and micro-USD reserved, and the counters (key, window end)."""
    held: dict[str, Any] = {}
    if admitted.ticket is not None and admitted.ticket.token_wants:
        held[WINDOWS] = [admitted.ticket.tokens_reserved, _keys(admitted.ticket.token_wants)]
    if admitted.reservation is not None and admitted.reservation.wants:
        held[SPEND] = [admitted.reservation.reserved, _keys(admitted.reservation.wants)]
    return held


def _keys(wants: list[Want]) -> list[tuple[str, float | None]]:
    return [(w.key, w.until) for w in wants]


class InFlight:
    """This replica's list of admitted, unsettled tasks, and its entry in the gateways bucket."""

    def __init__(
        self,
        bucket: KeyValue,
        *,
        replica: str,
        ttl_s: float = 10.0,
        beat_s: float = 1.0,
        soon_s: float = 0.1,
        on_fenced: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = bucket
        self.replica = replica
        self.ttl_s = ttl_s
        self.beat_s = beat_s
        self.soon_s = soon_s
        self._added = asyncio.Event()
        # Since when every write has succeeded (None: the last one failed). Only a replica that has written
        # for longer than another could have gone silent takes that one for dead: after an outage of the
        # bus, when nobody could write, the replicas do not claim each other's entries.
        self.steady_since: float | None = None
        self.fenced = False
        self._on_fenced = on_fenced
        self._clock = clock
        self._tasks: dict[int, bytes] = {}
        self._next = 0
        self._gone = 0  # counts tasks taken off the list: units given back may now include theirs
        self._written_gone = 0  # ... as of the entry last written
        self._written = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, admitted: Pass, *, task_id: str, tenant_id: str, at: float, ends_by: float) -> None:
        """Lists `admitted` (in memory; the next write stores it); `admitted.close` takes it off."""
        n = self._next
        self._next += 1
        self._tasks[n] = _listed(admitted, task_id=task_id, tenant_id=tenant_id, at=at, ends_by=ends_by)
        self._added.set()
        admitted.unlist = functools.partial(self._remove, n)

    def _remove(self, n: int) -> None:
        if self._tasks.pop(n, None) is not None:
            self._gone += 1

    async def before_return(self) -> None:
        """Awaited by the leases before units go back to a store: the entry must no longer list a task
        whose units may be among them. Raises Fenced when this replica was taken for dead."""
        if self._written_gone < self._gone or self.fenced:
            await self.write(unless_written=self._gone)

    async def write(self, *, unless_written: int | None = None, stopped: bool = False) -> None:
        """Writes this replica's entry as the list is now (compare-and-set: never over a claim); with
        `unless_written`, not when a write since has already stored the list that far on; `stopped`:
        this replica's last write, the entry expired at once for another to settle."""
        async with self._lock:
            if self.fenced:
                raise Fenced(f"gateway replica {self.replica} was taken for dead")
            if unless_written is not None and self._written_gone >= unless_written:
                return  # concurrent give-backs share one write
            gone = self._gone
            now = self._clock()
            head: dict[str, Any] = {
                "replica": self.replica,
                "written_at": round(now, 3),
                # a stopped list has expired already: rounded down, never to a moment still to come
                "expires_at": math.floor(now * 1000) / 1000 if stopped else round(now + self.ttl_s, 3),
            }
            if stopped:
                head["stopped"] = True
            tasks = b",".join(b'"%d":%s' % (n, task) for n, task in self._tasks.items())
            body = orjson.dumps(head)[:-1] + b',"tasks":{' + tasks + b"}}"
            created = self._written

            def change(current: bytes | None) -> tuple[bytes | None, bool]:
                if current is None:
                    return (None, False) if created else (body, True)
                if b'"claim"' in current and orjson.loads(current).get("claim"):  # parsed only if it may be
                    return None, False
                return body, True

            try:
                written = await kv.update(self.kv, self.replica, change)
            except Exception:
                self.steady_since = None
                raise
            if not written:
                self.fenced = True
                log.error(
                    "gateway replica %s was taken for dead (its entry is claimed or gone): it gives "
                    "nothing back from now on and stops",
                    self.replica,
                )
                if self._on_fenced is not None:
                    self._on_fenced()
                raise Fenced(f"gateway replica {self.replica} was taken for dead")
            self._written = True
            self._written_gone = max(self._written_gone, gone)
            if self.steady_since is None:
                self.steady_since = now

    async def start(self) -> None:
        await self.write()
        self._task = asyncio.create_task(self._beat(), name="inflight-beat")

    async def _beat(self) -> None:
        while not self.fenced:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.beat_s):
                    await self._added.wait()
                await asyncio.sleep(self.soon_s)  # what is admitted meanwhile joins this write
            self._added.clear()
            try:
                await self.write()
            except Fenced:
                return
            except Exception as exc:  # the bus is away: the next beat writes again
                log.warning("could not write the in-flight list of %s: %s", self.replica, exc)

    async def stop(self) -> None:
        """At shutdown, after every settlement and hand-back: the entry goes, or stays for another replica
        to settle what is still listed (a task whose result never came in time)."""
        await cancel(self._task)
        self._task = None
        if self.fenced:
            return
        try:
            if self._tasks:
                log.warning("%d admitted tasks left unsettled for another replica", len(self._tasks))
                await self.write(stopped=True)
            else:
                await self.kv.delete(self.replica)
        except Exception as exc:
            log.warning("could not close the in-flight list of %s: %s", self.replica, exc)


class Orphans:
    """Settles the listed tasks of replicas that died. Every replica scans the bucket every `scan_s`; a
    dead replica's entry goes to whichever claims it first."""

    def __init__(
        self,
        inflight: InFlight,
        js: JetStreamContext,
        events: EventPublisher,
        *,
        stores: dict[str, Store],
        policy: Policy | PolicySource,
        skew_s: float = 2.0,
        scan_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inflight = inflight
        self.kv = inflight.kv
        self.me = inflight.replica
        self.js = js
        self.events = events
        self._told: dict[str, float] = {}  # task id -> when `task.timed_out` was published for it
        # task id -> (when to look for its result next, the wait after that): from `beat_s`, doubling to
        # LOOK_MAX_S while it runs (a task API task may run an hour), every pass once past its deadline
        self._looks: dict[str, tuple[float, float]] = {}
        self.stores = stores
        self.policy = current_of(policy)  # the policy in force when a task is settled
        self.skew_s = skew_s
        self.scan_s = inflight.ttl_s / 2 if scan_s is None else scan_s
        self._clock = clock
        self._settling: dict[str, asyncio.Task[Any]] = {}
        self._work = Background()
        self._task: asyncio.Task[None] | None = None
        self.settled = 0  # tasks settled for dead replicas (for tests and logs)

    async def scan(self) -> list[str]:
        """Claims the entries of dead replicas and starts settling them; returns the replicas claimed."""
        steady = self.inflight.steady_since
        # A replica that has not written steadily for longer than another could have been silent may have
        # been cut off as long as the others: it judges nobody yet, and takes only lists handed over.
        judges = steady is not None and self._clock() - steady >= self.inflight.ttl_s + self.skew_s
        claimed = []
        for key in await kv.keys(self.kv):
            if key == self.me or key in self._settling:
                continue
            if cause := await kv.update(self.kv, key, functools.partial(self._claim, judges=judges)):
                if cause == "handed_over":
                    log.info("gateway replica %s stopped with tasks in flight: settling them", key)
                else:
                    log.warning("gateway replica %s is gone: settling what it left in flight", key)
                claimed.append(key)
                self._settling[key] = self._work.spawn(self._settle(key, cause))
        return claimed

    def _claim(self, current: bytes | None, *, judges: bool) -> tuple[bytes | None, str | None]:
        """Claims an entry whose replica is gone: returns why, "handed_over" (it stopped with tasks listed)
        or "lost" (it died, or was silent past `ttl_s`: only when this replica `judges`); None when it is
        alive or another replica is settling it."""
        if current is None:
            return None, None
        entry = orjson.loads(current)
        now = self._clock()
        stopped = entry.get("stopped", False)
        if not (stopped or judges) or entry["expires_at"] + (0.0 if stopped else self.skew_s) > now:
            return None, None  # alive (or this replica cannot tell yet)
        claim = entry.get("claim")
        if claim and claim["by"] != self.me and claim["until"] + self.skew_s > now:
            return None, None  # another replica is settling it
        entry["claim"] = {"by": self.me, "until": round(now + self.inflight.ttl_s, 3)}
        return orjson.dumps(entry), "handed_over" if stopped else "lost"

    async def _settle(self, key: str, cause: str) -> None:
        try:
            while True:
                entry, revision = await kv.read(self.kv, key)
                if entry is None:
                    return
                listed: dict[str, dict[str, Any]] = orjson.loads(entry)["tasks"]
                if not listed:
                    with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError):
                        await self.kv.delete(key, last=revision)
                    log.info("settled everything gateway replica %s left in flight", key)
                    return
                ended = await self._ended(listed)
                taken = await kv.update(self.kv, key, functools.partial(self._take_off, set(ended)))
                if taken is None:
                    return  # claimed by another replica meanwhile (this one was too slow to renew)
                for n in taken:
                    await self._give_back(listed[n], ended[n], cause)
                if not ended:
                    await asyncio.sleep(self.inflight.beat_s)
        except Exception:
            log.exception("settling what gateway replica %s left in flight failed; its claim will lapse", key)
        finally:
            self._settling.pop(key, None)

    async def _ended(self, listed: dict[str, dict[str, Any]]) -> dict[str, TaskCompleted | TaskFailed | None]:
        """The listed tasks that have ended, with their outcome (None: none came by the deadline). As its own
        gateway would, a task past its deadline is timed out (`task.timed_out`, under the id its gateway
        would have used: stored once), so the executor stops it and says what it still charged; its outcome
        is waited for SETTLE_WAIT_S more. A task still running is looked for less and less often (`_looks`):
        a list of many long tasks costs a few look-ups a second, not one per task each pass."""
        ended: dict[str, TaskCompleted | TaskFailed | None] = {}
        now = self._clock()
        for n, task in listed.items():
            task_id, late = task["task"], now > task["ends_by"]
            due, wait = self._looks.get(task_id, (now, self.inflight.beat_s))
            if now < due and not late:
                continue
            outcome = await stored_result(self.js, task["tenant"], task_id)
            if outcome is not None:
                ended[n] = outcome
            elif not late:
                self._looks[task_id] = (now + wait, min(2 * wait, LOOK_MAX_S))
            elif (told := self._told.setdefault(task_id, now)) == now:
                await self._time_out(task, now)
            elif now > told + SETTLE_WAIT_S:
                ended[n] = None
            if n in ended:
                self._told.pop(task_id, None)
                self._looks.pop(task_id, None)
        return ended

    async def _time_out(self, task: dict[str, Any], now: float) -> None:
        event = TaskTimedOut(
            task_id=task["task"], tenant_id=task["tenant"], waited_ms=(now - task["at"]) * 1000
        )
        await record(self.events, event, "timed_out")

    def _take_off(self, ns: set[str], current: bytes | None) -> tuple[bytes | None, list[str] | None]:
        """Takes `ns` off the entry and renews the claim; None if the claim is no longer this replica's."""
        if current is None:
            return None, None
        entry = orjson.loads(current)
        claim = entry.get("claim") or {}
        if claim.get("by") != self.me:
            return None, None
        taken = [n for n in ns if n in entry["tasks"]]
        for n in taken:
            del entry["tasks"][n]
        claim["until"] = round(self._clock() + self.inflight.ttl_s, 3)
        return orjson.dumps(entry), taken

    async def _give_back(
        self, task: dict[str, Any], outcome: TaskCompleted | TaskFailed | None, cause: str
    ) -> None:
        """Settles one task as its own gateway would have (`admission.unused`), straight to the stores."""
        reserved = {store: held[0] for store, held in task.items() if store in (WINDOWS, SPEND)}
        tokens, spend = unused(
            self.policy(), charged(outcome), tokens=reserved.get(WINDOWS, 0), spend=reserved.get(SPEND, 0)
        )
        now = self._clock()
        for store, amount in ((WINDOWS, tokens), (SPEND, spend)):
            if store not in task or not amount:
                continue
            for counter, until in task[store][1]:
                if until is None or until > now:  # a window that has ended is worth nothing
                    await self.stores[store].add(counter, -amount)
        self.settled += 1
        ORPHANS.labels(
            "answered"
            if isinstance(outcome, TaskCompleted)
            else "failed"
            if outcome is not None
            else "timed_out",
            cause,
        ).inc()
        log.info(
            "settled task %s of tenant %s for a gone replica: %d tokens and %d micro-USD given back",
            task["task"],
            task["tenant"],
            tokens,
            spend,
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="orphans")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.scan_s)
            try:
                await self.scan()
            except Exception as exc:
                log.warning("could not look for gone gateway replicas: %s", exc)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self._work.stop(grace_s=1.0)
