"""Helpers for the faces' stream tests: a task's items as the bus would give them, and the JSON of the
SSE events a face renders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.common.streaming import Chunk


async def items(*given: Chunk | TaskCompleted) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    for item in given:
        yield item


def sse_data(events: list[bytes]) -> list[dict[str, Any]]:
    """Every event's `data` (but `[DONE]`), parsed."""
    return [
        orjson.loads(line[6:])
        for event in events
        for line in event.split(b"\n")
        if line.startswith(b"data: ") and line != b"data: [DONE]"
    ]
