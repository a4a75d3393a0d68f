"""One usage writer per process: task results queue their entries and one task stores them in batches.

A batch costs one transaction, run in one greenlet with Core statements: one insert of the new entries
and one aggregate upsert executed per (tenant, day, user, model, tier) row. It reads nothing first: a
task charged before (a redelivery) is refused by its unique task id, the transaction rolls back, and the
batch is written again after reading which of its tasks are charged. With `linger_s` the writer waits that
long after the first entry of a batch for others (billing is off the request path: the delay only
postpones the acks). A caller's `record` returns once its entry is committed, so the bus acks only what
is stored.

Exactly once: the task id is unique in the database. An entry already stored is returned as it is; when
another replica stores one in between, the batch's unique key fails again, and its entries are stored one
at a time by `record_usage`, which settles each collision on its own."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from switchyard.billing.aggregates import add_to_daily
from switchyard.billing.models import UsageEntry
from switchyard.billing.service import Clock, Recorded, _now, new_entry, record_usage
from switchyard.common.batching import BatchWriter, Pending
from switchyard.common.events import TaskCompleted
from switchyard.common.policy import Policy
from switchyard.common.policy_source import PolicySource, current_of

log = logging.getLogger(__name__)

_COLUMNS = tuple(c.key for c in UsageEntry.__table__.columns)


@dataclass(frozen=True, slots=True)
class _Result:
    event_id: str
    completed: TaskCompleted
    entry_id: str | None = None


class UsageWriter(BatchWriter[_Result, Recorded]):
    name = "usage writer"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        policy: Policy | PolicySource,
        max_batch: int = 200,
        linger_s: float = 0.0,
        clock: Clock = _now,
    ) -> None:
        super().__init__(max_batch=max_batch, linger_s=linger_s)
        self._sessions = sessions
        self._policy = current_of(policy)  # read per batch: each is priced by the policy in force
        self._clock = clock

    async def record(
        self, *, event_id: str, completed: TaskCompleted, entry_id: str | None = None
    ) -> Recorded:
        """Prices and stores `completed` once per task, like `record_usage`, batched with its neighbours."""
        return await self.submit(_Result(event_id, completed, entry_id))

    async def write(self, batch: list[Pending[_Result, Recorded]]) -> None:
        try:
            await self._write(batch, check=False)  # the common case: none of these tasks was charged
        except IntegrityError:  # a redelivery: read which were
            try:
                await self._write(batch, check=True)
            except IntegrityError:  # another replica charged one of these meanwhile: settle each alone
                await self._write_each(batch)

    async def _write(self, batch: list[Pending[_Result, Recorded]], *, check: bool) -> None:
        now, policy = self._clock(), self._policy()
        async with self._sessions() as session, session.begin():
            results = await session.run_sync(self._store, batch, now, policy, check)
        for p, result in zip(batch, results, strict=True):
            p.done(result)

    def _store(
        self,
        session: Session,
        batch: list[Pending[_Result, Recorded]],
        now: datetime,
        policy: Policy,
        check: bool,
    ) -> list[Recorded]:
        """One transaction, one greenlet, Core inserts. Without `check` nothing is read first: the unique
        task id refuses a task charged before, and the caller retries with `check`."""
        known: dict[tuple[str, str], UsageEntry] = {}  # by (task, tenant): the entries' unique key
        if check:
            task_ids = list({p.item.completed.task_id for p in batch})
            rows = session.execute(select(UsageEntry).where(UsageEntry.task_id.in_(task_ids)))
            known = {(e.task_id, e.tenant_id): e for e in rows.scalars()}
        results: list[Recorded] = []
        fresh: list[UsageEntry] = []
        for p in batch:
            stored = known.get((p.item.completed.task_id, p.item.completed.tenant_id))
            if stored is not None:  # charged before, or earlier in this batch
                results.append(Recorded(stored, created=False))
                continue
            incoming = p.item
            entry = new_entry(
                event_id=incoming.event_id,
                completed=incoming.completed,
                policy=policy,
                now=now,
                entry_id=incoming.entry_id,
            )
            known[entry.task_id, entry.tenant_id] = entry
            fresh.append(entry)
            results.append(Recorded(entry, created=True))
        if fresh:
            conn = session.connection()
            # The unique key decides first: a duplicate never reaches the aggregate.
            conn.execute(insert(UsageEntry), [{name: getattr(e, name) for name in _COLUMNS} for e in fresh])
            add_to_daily(conn, fresh)
        return results

    async def _write_each(self, batch: list[Pending[_Result, Recorded]]) -> None:
        for p in batch:
            try:
                result = await record_usage(
                    self._sessions,
                    event_id=p.item.event_id,
                    entry_id=p.item.entry_id,
                    completed=p.item.completed,
                    policy=self._policy(),
                    clock=self._clock,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # that caller's event is naked and redelivered
                p.fail(exc)
            else:
                p.done(result)
