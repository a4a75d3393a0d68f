"""Group writes: concurrent callers queue items and one task writes them in batches.

While a batch is being written the next one accumulates, so throughput grows with load. With `linger_s`
the writer also waits that long after the first item of a batch for others: one database transaction for
several events costs much less CPU than one each, and for consumers off the request path (the ledger,
billing) the delay only postpones their acks. A caller's `submit` returns once its item is written, so
the bus acks only what is stored; items still queued when the writer stops fail, and the bus redelivers
them.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, TypeVar

from switchyard.common.background import cancel

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]

    def done(self, result: R) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class BatchWriter(ABC, Generic[T, R]):
    """Subclasses write a batch in `write` and settle each of its `Pending` (done or fail); an exception
    out of `write` fails every caller still waiting."""

    name = "batch-writer"

    def __init__(self, *, max_batch: int, linger_s: float = 0.0) -> None:
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._queue: asyncio.Queue[Pending[T, R]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def write(self, batch: list[Pending[T, R]]) -> None: ...

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        while not self._queue.empty():  # never acked: the bus redelivers them
            self._queue.get_nowait().fail(RuntimeError(f"the {self.name} stopped"))

    async def submit(self, item: T) -> R:
        if self._task is None:
            raise RuntimeError(f"the {self.name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(item, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger_s > 0:
                await self._linger(batch)
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.write(batch)
            except asyncio.CancelledError:
                for pending in batch:
                    pending.future.cancel()
                raise
            except Exception as exc:  # the database is unavailable: every caller naks, the bus redelivers
                for pending in batch:
                    pending.fail(exc)

    async def _linger(self, batch: list[Pending[T, R]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        while len(batch) < self._max_batch and (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    item = await self._queue.get()
            except TimeoutError:
                return
            batch.append(item)
