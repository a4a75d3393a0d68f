"""Keep-alives in a stream's silences (keepalive.beating)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from switchyard.gateway.keepalive import beating

pytestmark = pytest.mark.unit


async def _events(pauses: list[float], *, fail: bool = False) -> AsyncIterator[bytes]:
    for n, pause in enumerate(pauses):
        await asyncio.sleep(pause)
        yield f"e{n}".encode()
    if fail:
        raise RuntimeError("the stream broke")


async def test_a_silence_longer_than_the_interval_gets_beats_and_the_events_keep_their_order() -> None:
    got = [item async for item in beating(_events([0, 0.25, 0, 0]), b"beat", 0.1)]
    events = [item for item in got if item != b"beat"]
    assert events == [b"e0", b"e1", b"e2", b"e3"]
    assert got.index(b"e0") < got.index(b"beat") < got.index(b"e1")
    assert 1 <= got.count(b"beat") <= 3


async def test_no_beat_or_no_interval_passes_the_events_as_they_are() -> None:
    assert [i async for i in beating(_events([0, 0.05]), None, 0.01)] == [b"e0", b"e1"]
    assert [i async for i in beating(_events([0, 0.05]), b"beat", 0)] == [b"e0", b"e1"]


async def test_the_streams_error_comes_out_after_its_events() -> None:
    got: list[bytes] = []
    with pytest.raises(RuntimeError, match="the stream broke"):
        async for item in beating(_events([0], fail=True), b"beat", 5):
            got.append(item)
    assert got == [b"e0"]


async def test_closing_it_stops_reading_the_stream() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"e"
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    stream = beating(endless(), b"beat", 5)
    assert await anext(stream) == b"e"
    await stream.aclose()  # the client went away
    await asyncio.wait_for(closed.wait(), 1)
