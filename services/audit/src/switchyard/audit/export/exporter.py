"""The export loop: read the ledger after the position, encode, deliver, move the position forward.

At least once, in seq order: the position (stored in the database) only moves to what the destination has
confirmed, so after a crash or a lost connection the exporter resends from there and a SIEM de-duplicates
on seq. Backpressure: the next batch is read only once the sink took the last one. Failures back off
(0.5 s doubling to 30 s) and retry (a one-off export gives up after `max_failures` in a row); a destination
that refuses us for good stops the exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.export import positions
from switchyard.audit.export.formats import Encoder
from switchyard.audit.export.record import read_after
from switchyard.audit.export.sinks import Sink, SinkError
from switchyard.audit.models import LedgerEntry

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass
class ExportJob:
    encoder: Encoder
    open_sink: Callable[[], Awaitable[Sink]]
    name: str | None = None  # the stored position's name; None: not stored (a one-off export)
    from_seq: int | None = None  # start here instead of after the stored position
    batch: int = 500
    poll_s: float = 0.5
    max_failures: int | None = None  # attempts in a row that deliver nothing before giving up; None: never


class ExportGaveUp(Exception):
    """`max_failures` attempts in a row failed (the destination is down or wrong): what failed last, and
    the seq every entry up to which was delivered."""

    def __init__(self, problem: str, *, position: int, attempts: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.position = position
        self.attempts = attempts


@dataclass
class Progress:
    position: int  # every entry up to here is delivered
    sent: int  # the highest seq handed to the sink
    reconnects: int = 0
    head: int | None = None  # once: the ledger's last seq when the export started


async def run_export(
    sessions: async_sessionmaker[AsyncSession],
    job: ExportJob,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
) -> Progress:
    """Exports until `stop` is set; with `once`, until everything in the ledger at the start is delivered."""
    stop = stop or asyncio.Event()
    stored = await positions.load(sessions, job.name) if job.name else 0
    start = job.from_seq - 1 if job.from_seq is not None else stored
    progress = Progress(position=start, sent=start)
    log.info("exporting entries after seq %d", start)
    target = progress.head = await ledger_head(sessions) if once else None
    if target is not None and start >= target:  # nothing after the start: no destination to open
        return progress
    sink: Sink | None = None
    backoff = 0.5
    failures = 0
    while not stop.is_set():
        try:
            if sink is None:
                sink = await job.open_sink()
                progress.sent = progress.position  # resend whatever was not confirmed
            records = await read_after(sessions, after=progress.sent, limit=job.batch)
            if target is not None:
                records = [r for r in records if r.seq <= target]
            if records:
                items = [(r.seq, job.encoder.encode(r)) for r in records]
                confirmed = await sink.deliver(items)
                progress.sent = records[-1].seq
            else:
                confirmed = await sink.confirm()
                if target is not None and confirmed >= min(progress.sent, target):
                    progress.position = max(progress.position, confirmed)
                    break
                await _wait(stop, job.poll_s)
            if confirmed > progress.position:
                progress.position = confirmed
                if job.name:
                    await positions.save(sessions, job.name, confirmed)
            backoff = 0.5
            failures = 0
        except (SinkError, OSError, DBAPIError) as exc:
            if sink is not None:
                await sink.close()
                sink = None
            failures += 1
            if job.max_failures is not None and failures >= job.max_failures:
                if job.name and progress.position > stored:
                    await positions.save(sessions, job.name, progress.position)
                problem = str(exc) or exc.__class__.__name__
                raise ExportGaveUp(problem, position=progress.position, attempts=failures) from exc
            log.warning(
                "export interrupted after seq %d (%s); retrying in %.1fs", progress.position, exc, backoff
            )
            progress.reconnects += 1
            await _wait(stop, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
    if sink is not None:
        try:
            progress.position = max(progress.position, await sink.flush())
        except (SinkError, OSError) as exc:
            log.warning("the last entries sent may not have arrived (%s); they are resent next time", exc)
        await sink.close()
    if job.name and progress.position > stored:
        await positions.save(sessions, job.name, progress.position)
    return progress


async def ledger_head(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.coalesce(func.max(LedgerEntry.seq), 0)))).scalar_one())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
