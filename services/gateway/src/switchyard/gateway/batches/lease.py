"""A batch run's state, and the lease that lets one replica run it (`running.BatchRun` is what the run does).

The holder renews its lease every third of `lease_s`, writing the progress so far with it (`done_below`, the
counts), and hears there what changed meanwhile: a cancellation asked for, the completion window past, the
input file deleted (the batch fails), or another replica holding the batch now (`Lost`: this one stops and
leaves the tasks running to it). Every change to the record goes through `_write`, which only the lease's
holder may make."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors

from switchyard.gateway.batches import inputs, principals
from switchyard.gateway.batches.models import BatchRecord, RequestCounts
from switchyard.gateway.batches.store import BatchStore
from switchyard.gateway.errors import APIError, NotFound
from switchyard.gateway.state import Gateway
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)


class Lost(Exception):
    """Another replica holds the batch now: this one stops, leaving the tasks running to it."""


@dataclass
class Knobs:
    replica: str
    concurrency: int
    lease_s: float
    poll_s: float
    principal_ttl_s: float


@dataclass
class LeasedRun:
    gw: Gateway
    store: BatchStore
    knobs: Knobs
    record: BatchRecord
    principal: Principal | None = None
    ending: str | None = None  # cancelled, expired, failed (`gone`): in-flight tasks cancelled, no more sent
    gone: str | None = None  # why the input file cannot be read any more: the batch fails
    halting: bool = False  # the lease is lost or the replica stops: the tasks run on, another takes over
    outcomes: dict[int, str] = field(default_factory=dict)  # line index -> completed / failed
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _resolved_at: float = 0.0

    def __post_init__(self) -> None:
        self.start = self.record.done_below  # where this run began, and the results before it
        self.start_below = self.record.below

    @property
    def batch_id(self) -> str:
        return self.record.batch.id

    @property
    def stopping(self) -> bool:
        return self.ending is not None or self.halting

    def halt(self) -> None:
        self.halting = True
        self._wake.set()

    def end(self, how: str) -> None:
        if self.ending is None:
            self.ending = how
            self._wake.set()

    def _heard(self, record: BatchRecord) -> None:
        """A cancellation asked for, or the completion window past: the batch ends."""
        if record.batch.status == "cancelling":
            self.end("cancelled")
        elif record.batch.status == "in_progress" and time.time() >= record.batch.expires_at:
            self.end("expired")

    def _input_gone(self, exc: APIError) -> str:
        """The input file was deleted before the batch ended: its requests (and their `custom_id`s, which
        the output needs) cannot be read any more, so the batch ends `failed`."""
        if self.gone is None:
            log.warning("batch %s: its input file is gone (%s): the batch fails", self.batch_id, exc.message)
            self.gone = inputs.gone(self.record.batch.input_file_id)
        self.end("failed")
        return self.gone

    # -- the lease ---------------------------------------------------------------------------------

    async def _keep(self) -> None:
        """Renews the lease with the progress so far, and hears a cancellation, the expiry, a lost lease."""
        every = self.knobs.lease_s / 3
        while True:
            await asyncio.sleep(every)
            try:
                record = await self.store.change(self.batch_id, self._renewed)
            except Exception as exc:
                log.warning("batch %s: lease not renewed (%r)", self.batch_id, exc)
                runner = self.record.runner
                if runner is None or runner.until < time.time():
                    self.halt()
                continue
            if record is None or record.runner is None or record.runner.owner != self.knobs.replica:
                log.warning("batch %s: another replica holds it now", self.batch_id)
                self.halt()
                return
            self.record = record
            self._heard(record)
            if record.batch.status != "validating" and self.gone is None:
                await self._check_input()

    async def _check_input(self) -> None:
        """Whether the input file is still there: its deletion is heard within a renewal, not only when
        the runner next reads the file (a small file is read whole at once)."""
        batch = self.record.batch
        try:
            await self.gw.files.get(tenant_id=self.record.tenant_id, file_id=batch.input_file_id, held=True)
        except NotFound as exc:
            self._input_gone(exc)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("batch %s: its input file not checked (%r)", self.batch_id, exc)

    def _renewed(self, r: BatchRecord) -> BatchRecord | None:
        if r.runner is None or r.runner.owner != self.knobs.replica:
            return None
        runner = r.runner.model_copy(update={"until": time.time() + self.knobs.lease_s})
        if r.batch.status != "in_progress":
            return r.model_copy(update={"runner": runner})
        done_below, below, counts = self._progress(r.batch.request_counts.total)
        batch = r.batch.model_copy(update={"request_counts": counts})
        return r.model_copy(
            update={"runner": runner, "done_below": done_below, "below": below, "batch": batch}
        )

    def _progress(self, total: int) -> tuple[int, RequestCounts, RequestCounts]:
        """The first line whose result is not known yet; the counts of the lines before it; the counts of
        all. This run started at the record's `done_below`: the earlier lines are in its `below`."""
        done_below = self.start
        while done_below in self.outcomes:
            done_below += 1
        below = self.start_below.model_copy()
        counts = self.start_below.model_copy(update={"total": total})
        for index, outcome in self.outcomes.items():
            for tally in (counts, below) if index < done_below else (counts,):
                setattr(tally, outcome, getattr(tally, outcome) + 1)
        return done_below, below, counts

    async def _write(self, edit: Callable[[BatchRecord], BatchRecord | None]) -> BatchRecord:
        """A change only the lease's holder may make; Lost when it is not this replica any more."""
        me = self.knobs.replica

        def mine(r: BatchRecord) -> BatchRecord | None:
            return edit(r) if r.runner is not None and r.runner.owner == me else None

        record = await self.store.change(self.batch_id, mine)
        if record is None or record.runner is None or record.runner.owner != me:
            self.halt()
            raise Lost(self.batch_id)
        self.record = record
        return record

    async def release(self) -> None:
        """Gives the lease up, if this replica still holds it (the batch is done, or this replica stops:
        another takes it over at once)."""
        me = self.knobs.replica
        await self.store.change(
            self.batch_id,
            lambda r: r.model_copy(update={"runner": None}) if r.runner and r.runner.owner == me else None,
        )

    # -- helpers -----------------------------------------------------------------------------------

    def _owner(self) -> Principal:
        """The submitter as the record names them: enough to read and cancel their tasks."""
        r = self.record
        return Principal(
            tenant_id=r.tenant_id, api_key_id=r.api_key_id, user_id=r.user_id, key_prefix="batch"
        )

    async def _refresh_principal(self) -> None:
        now = time.monotonic()
        if self._resolved_at and now - self._resolved_at < self.knobs.principal_ttl_s:
            return
        r = self.record
        self.principal = await principals.resolve(
            self.gw.sessions, tenant_id=r.tenant_id, api_key_id=r.api_key_id, user_id=r.user_id
        )
        self._resolved_at = now

    async def _pause(self, seconds: float, heard: asyncio.Event | None = None) -> None:
        """Waits `seconds`, or less: until the batch ends or stops, or `heard` is set."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, heard) if e is not None]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


def _with(record: BatchRecord, **changes: object) -> BatchRecord:
    return record.model_copy(update={"batch": record.batch.model_copy(update=changes)})
