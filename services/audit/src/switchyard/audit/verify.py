"""Verifying the ledger: every seq in order from 1, every link, every hash recomputed from the row.

Finds an altered row (its contents no longer give its hash), a removed one (a gap in seq, or a broken
link), reordered rows (seq is inside the hashed bytes, and links break) and inserted ones (a forged hash,
or a link that does not match), and names the first bad entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from switchyard.audit.chain import GENESIS_HASH, EntryFields, entry_hash
from switchyard.audit.models import LedgerEntry

PAGE = 5000


@dataclass(frozen=True, slots=True)
class Row:
    fields: EntryFields
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int
    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    entries: int  # entries verified intact (before the problem, if any)
    head_seq: int
    head_hash: str
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class ChainVerifier:
    """Feed rows in seq order; the first problem stops verification."""

    def __init__(self) -> None:
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.problem: Problem | None = None

    def feed(self, row: Row) -> Problem | None:
        if self.problem is not None:
            return self.problem
        self.problem = self._check(row)
        if self.problem is None:
            self.expected_seq += 1
            self.prev_hash = row.entry_hash
        return self.problem

    def _check(self, row: Row) -> Problem | None:
        seq, event_id = row.fields.seq, row.fields.event_id
        if seq != self.expected_seq:
            if seq > self.expected_seq:
                missing = (
                    f"entry {self.expected_seq} is missing"
                    if seq == self.expected_seq + 1
                    else f"entries {self.expected_seq}..{seq - 1} are missing"
                )
                return Problem(
                    seq, event_id, f"{missing} (deleted or renumbered): expected seq {self.expected_seq}"
                )
            return Problem(seq, event_id, f"seq {seq} out of sequence: expected {self.expected_seq}")
        if row.prev_hash != self.prev_hash:
            before = f"entry {seq - 1}" if seq > 1 else "the genesis hash"
            return Problem(
                seq,
                event_id,
                f"prev_hash does not link to {before}: entries were inserted, removed or reordered here, "
                "or the previous entry was rewritten",
            )
        if entry_hash(row.fields, self.prev_hash) != row.entry_hash:
            return Problem(
                seq, event_id, "entry_hash does not match the entry's contents: the entry was altered"
            )
        return None

    def report(self) -> Report:
        return Report(self.expected_seq - 1, self.expected_seq - 1, self.prev_hash, self.problem)


async def verify_ledger(sessions: async_sessionmaker[AsyncSession], *, page: int = PAGE) -> Report:
    verifier = ChainVerifier()
    after = 0
    async with sessions() as session:
        while True:
            try:
                rows = await _page(session, after, page)
            except (ValueError, TypeError):  # a value the database holds but no writer could have written
                verifier.problem = await _unreadable(session, after, page)
                return verifier.report()
            for row in rows:
                if verifier.feed(row) is not None:
                    return verifier.report()
            if len(rows) < page:
                return verifier.report()
            after = rows[-1].fields.seq


async def _page(session: AsyncSession, after: int, limit: int) -> list[Row]:
    table = LedgerEntry.__table__
    query = select(table).where(table.c.seq > after).order_by(table.c.seq).limit(limit)
    return [_row(r._mapping) for r in (await session.execute(query)).all()]


async def _unreadable(session: AsyncSession, after: int, limit: int) -> Problem:
    """Finds the first row of a page that cannot be read back (a column was overwritten with garbage)."""
    keys = select(LedgerEntry.seq, LedgerEntry.event_id).where(LedgerEntry.seq > after)
    for seq, event_id in (await session.execute(keys.order_by(LedgerEntry.seq).limit(limit))).all():
        try:
            await _page(session, seq - 1, 1)
        except (ValueError, TypeError) as exc:
            return Problem(seq, event_id, f"the row cannot be read back ({exc}): the entry was altered")
    raise RuntimeError("a ledger page could not be read, but each of its rows can")


def _row(m: RowMapping) -> Row:
    fields = EntryFields(**{name: m[name] for name in EntryFields.__slots__})
    return Row(fields=fields, prev_hash=m["prev_hash"], entry_hash=m["entry_hash"])
