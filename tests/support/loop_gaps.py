"""How long an event loop goes without running its other tasks while some work is awaited: the longest gap
between a ticker's ticks (what every other request of a gateway replica waits at worst)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def longest_gap(work: Awaitable[T], *, tick_s: float = 0.001) -> tuple[T, float, float]:
    """`work`'s result, the longest gap between ticks of a `tick_s` ticker while it was awaited, and how
    long it took (wall time)."""
    longest, running = 0.0, True

    async def tick() -> None:
        nonlocal longest
        last = time.monotonic()
        while running:
            await asyncio.sleep(tick_s)
            now = time.monotonic()
            longest, last = max(longest, now - last), now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    result = await work
    took = time.monotonic() - started
    await asyncio.sleep(0.02)  # the ticker sees the last gap
    running = False
    await ticker
    return result, longest, took
