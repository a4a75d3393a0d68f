"""One writer per process: concurrent callers queue their drafts and one task appends them in batches.

While a batch is being written the next one accumulates, so throughput grows with load. With `linger_s`,
the writer also waits that long after the first draft of a batch for others: a task's events arrive a few
milliseconds apart, and one transaction for several of them costs much less CPU than one each (the ledger
is off the request path, so the delay only postpones the acks). A caller's `append` returns only once its
entry is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.entries import EntryDraft
from switchyard.audit.service import Appended, Unwritable, append_entries

log = logging.getLogger(__name__)

Pending = tuple[EntryDraft, "asyncio.Future[Appended]"]


class LedgerWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = 500,
        linger_s: float = 0.0,
        on_appended: Callable[[int], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._on_appended = on_appended
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():  # never acked: the bus redelivers them
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the ledger writer stopped"))

    async def append(self, draft: EntryDraft) -> Appended:
        if self._task is None:
            raise RuntimeError("the ledger writer is not running")
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((draft, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger_s > 0:
                await self._linger(batch)
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                _settle(batch, None)
                raise
            except Unwritable as exc:
                # An entry the database rejects must not hold back the others: write them one by one.
                log.warning("ledger append of %d entries rejected (%s)", len(batch), exc.message)
                for i, pending in enumerate(batch):
                    try:
                        await self._write([pending])
                    except asyncio.CancelledError:
                        _settle(batch[i:], None)
                        raise
                    except Exception as one:  # that caller's event is naked and, in the end, dead-lettered
                        _settle([pending], one)
            except Exception as exc:  # the database is unavailable: every caller naks, the bus redelivers
                _settle(batch, exc)

    async def _linger(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        while len(batch) < self._max_batch and (left := deadline - loop.time()) > 0:
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                return

    async def _write(self, batch: list[Pending]) -> None:
        results = await append_entries(self._sessions, drafts=[draft for draft, _ in batch])
        if self._on_appended is not None:
            self._on_appended(sum(1 for r in results if r.created))
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _settle(batch: list[Pending], exc: BaseException | None) -> None:
    """Fails the callers still waiting (`None`: cancels them)."""
    for _, future in batch:
        if future.done():
            continue
        if exc is None:
            future.cancel()
        else:
            future.set_exception(exc)
