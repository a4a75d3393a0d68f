"""One ledger writer per process: concurrent callers queue their drafts and one task appends them in
batches (`switchyard.common.batching`: with `linger_s` it waits that long for a task's other events, a few
milliseconds apart, so several land in one transaction). The writer remembers the head and the tree's
frontier it committed last, so a batch is only its inserts (see `TipCache`). A caller's `append` returns
only once its entry is committed; an entry the database rejects never holds back the others in its batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.entries import EntryDraft
from switchyard.audit.service import Appended, TipCache, Unwritable, append_entries
from switchyard.common.batching import BatchWriter, Pending

log = logging.getLogger(__name__)


class LedgerWriter(BatchWriter[EntryDraft, Appended]):
    name = "ledger writer"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = 500,
        linger_s: float = 0.0,
        on_appended: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(max_batch=max_batch, linger_s=linger_s)
        self._sessions = sessions
        self._on_appended = on_appended
        self._tip = TipCache()  # the head this writer last committed: the next batch needs no reads

    async def append(self, draft: EntryDraft) -> Appended:
        return await self.submit(draft)

    async def write(self, batch: list[Pending[EntryDraft, Appended]]) -> None:
        try:
            await self._append(batch)
        except Unwritable as exc:
            # An entry the database rejects must not hold back the others: write them one by one.
            log.warning("ledger append of %d entries rejected (%s)", len(batch), exc.message)
            for pending in batch:
                try:
                    await self._append([pending])
                except asyncio.CancelledError:
                    raise
                except Exception as one:  # that caller's event is naked and, in the end, dead-lettered
                    pending.fail(one)

    async def _append(self, batch: list[Pending[EntryDraft, Appended]]) -> None:
        results = await append_entries(self._sessions, drafts=[p.item for p in batch], tip=self._tip)
        if self._on_appended is not None:
            self._on_appended(sum(1 for r in results if r.created))
        for pending, result in zip(batch, results, strict=True):
            pending.done(result)
