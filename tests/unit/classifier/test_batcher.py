from __future__ import annotations

import asyncio
import time

import pytest

from switchyard.classifier.batcher import MicroBatcher

pytestmark = pytest.mark.unit


async def test_concurrent_requests_share_batches_and_get_their_own_results() -> None:
    sizes: list[int] = []

    def work(items: list[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.01)
        return [i * 2 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(work, max_batch=8)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
    finally:
        await batcher.stop()
    assert results == [i * 2 for i in range(40)]
    assert max(sizes) == 8 and len(sizes) < 40 and sum(sizes) == 40


async def test_a_failing_batch_fails_its_callers_and_the_batcher_carries_on() -> None:
    def work(items: list[str]) -> list[str]:
        if "boom" in items:
            raise ValueError("boom")
        return items

    batcher: MicroBatcher[str, str] = MicroBatcher(work)
    await batcher.start()
    try:
        with pytest.raises(ValueError):
            await batcher.submit("boom")
        assert await batcher.submit("ok") == "ok"
    finally:
        await batcher.stop()


async def test_a_lone_request_is_not_delayed() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda xs: xs, max_wait_s=0.0)
    await batcher.start()
    try:
        started = time.perf_counter()
        assert await batcher.submit(1) == 1
        assert time.perf_counter() - started < 0.05
    finally:
        await batcher.stop()
