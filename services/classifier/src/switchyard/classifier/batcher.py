"""An asyncio micro-batcher: concurrent callers' items are grouped into one call of a batch function.

The batch function runs in a worker thread (ONNX Runtime releases the GIL), so the event loop keeps
receiving while a batch computes; whatever arrived meanwhile forms the next batch. With `max_wait_s` = 0
a lone request is never delayed; under load batches fill by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from switchyard.common.background import cancel

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int = 32, max_wait_s: float = 0.0
    ) -> None:
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batcher")
        self.batches = 0
        self.items = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        self._pool.shutdown(wait=True)

    async def submit(self, item: T) -> R:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() has not been awaited")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            if self.max_wait_s > 0:
                deadline = loop.time() + self.max_wait_s
                while len(batch) < self.max_batch and (left := deadline - loop.time()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            item = await self._queue.get()
                    except TimeoutError:
                        break
                    batch.append(item)
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._pool, self._fn, [item for item, _ in live])
            except Exception as exc:  # the callers see the failure; the batcher keeps serving
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
