"""The background retry of writes the bus refused (`switchyard.common.backlog`)."""

from __future__ import annotations

import asyncio

import pytest

from switchyard.common.backlog import Backlog


class Owed:
    """Items written one at a time by `flush`, which is refused `refusals` times first."""

    def __init__(self, refusals: int) -> None:
        self.items: list[str] = []
        self.written: list[str] = []
        self.refusals = refusals
        self.attempts = 0

    async def flush(self) -> None:
        self.attempts += 1
        while self.items:
            if self.refusals:
                self.refusals -= 1
                raise ConnectionError("refused")
            self.written.append(self.items.pop(0))


async def test_what_is_owed_is_retried_until_written_and_each_item_written_once() -> None:
    owed = Owed(refusals=3)
    backlog = Backlog(owed.flush, owed.items.__len__, what="things", first_s=0.01, max_s=0.04)
    owed.items.extend(["a", "b"])
    backlog.kick()
    backlog.kick()  # already running: no second runner
    for _ in range(200):
        if not owed.items:
            break
        await asyncio.sleep(0.01)
    assert owed.written == ["a", "b"]
    assert owed.attempts == 4  # three refused, then both written
    await backlog.close()
    assert owed.attempts == 4  # nothing owed: close writes nothing


async def test_close_tries_once_more_and_logs_what_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    owed = Owed(refusals=10**6)
    backlog = Backlog(owed.flush, owed.items.__len__, what="things", first_s=60.0)
    owed.items.append("a")
    backlog.kick()
    await asyncio.sleep(0)  # the runner waits its first delay
    await backlog.close()  # cancels it and tries once more, which is refused
    assert owed.attempts == 1
    assert owed.items == ["a"]
    assert "1 things could not be written before shutdown" in caplog.text


async def test_close_writes_what_was_still_owed() -> None:
    owed = Owed(refusals=0)
    backlog = Backlog(owed.flush, owed.items.__len__, what="things", first_s=60.0)
    owed.items.append("a")
    backlog.kick()
    await backlog.close()
    assert owed.written == ["a"]
