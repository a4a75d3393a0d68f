"""Work started without waiting for it (`switchyard.common.background`)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from switchyard.common import background
from switchyard.common.background import Background, cancel

pytestmark = pytest.mark.unit


async def test_a_spawned_task_is_held_until_it_ends_and_drain_waits_for_what_starts_meanwhile() -> None:
    tasks, done = Background(), []

    async def work(n: int) -> None:
        await asyncio.sleep(0.01)
        if n < 3:  # a task that starts another while drain is waiting
            tasks.spawn(work(n + 1))
        done.append(n)

    tasks.spawn(work(0))
    gc.collect()  # the loop holds tasks weakly: only the Background keeps this one alive
    assert len(tasks) == 1
    await asyncio.wait_for(tasks.drain(), 5)
    assert done == [0, 1, 2, 3] and len(tasks) == 0 and not tasks


async def test_one_task_failing_neither_stops_the_others_nor_raises_from_drain() -> None:
    tasks, done = Background(), []

    async def fails() -> None:
        raise RuntimeError("its own to log")

    async def works() -> None:
        await asyncio.sleep(0.01)
        done.append(True)

    failing = tasks.spawn(fails())
    tasks.spawn(works())
    await asyncio.wait_for(tasks.drain(), 5)
    assert done == [True] and isinstance(failing.exception(), RuntimeError)


async def test_stop_cancels_what_outlives_the_grace_period() -> None:
    tasks, ended = Background(), []

    async def work(seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
            ended.append(seconds)
        except asyncio.CancelledError:
            ended.append(-seconds)
            raise

    quick, slow = tasks.spawn(work(0.01)), tasks.spawn(work(30))
    await asyncio.wait_for(tasks.stop(grace_s=0.2), 5)
    assert ended == [0.01, -30] and quick.done() and slow.cancelled() and not tasks
    await tasks.stop(grace_s=0.2)  # nothing left: returns at once


async def _dropping_cancellations(requests: list[asyncio.Future[int]]) -> None:
    """A loop around requests, as a beat writing a KV entry is: each waits through `asyncio.wait_for`, which
    on Python 3.11 drops a cancellation that arrives as its result does."""
    while True:
        request = asyncio.get_running_loop().create_future()
        requests.append(request)
        await asyncio.wait_for(request, 30)


@pytest.mark.parametrize("stopping", ["cancel", "stop"])
async def test_a_task_whose_cancellation_is_dropped_is_cancelled_again(
    stopping: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(background, "CANCEL_AGAIN_S", 0.05, raising=False)
    requests: list[asyncio.Future[int]] = []
    tasks = Background()
    loop = tasks.spawn(_dropping_cancellations(requests))
    await asyncio.sleep(0.01)
    stopped = asyncio.ensure_future(cancel(loop) if stopping == "cancel" else tasks.stop(grace_s=0))
    while not loop.cancelling():
        await asyncio.sleep(0)
    requests[-1].set_result(1)  # the request is answered before the loop has seen its cancellation
    await asyncio.wait({stopped}, timeout=5)  # before: waited for the loop forever on Python 3.11
    assert stopped.done() and loop.cancelled() and len(requests) >= 2
    loop.cancel()  # (before: still running)
