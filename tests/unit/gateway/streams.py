"""Helpers for the faces' stream tests: a task's items as the bus would give them, and the JSON of the
SSE events a face renders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchyard.common.events import TaskCompleted, TaskFailed, ToolCall, Usage
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


def calls_answer(*calls: ToolCall, content: str = "") -> TaskCompleted:
    """An answer of `oai/tool-call` that ended with these tool calls."""
    return TaskCompleted(
        task_id="t1",
        tenant_id="acme",
        model="oai/tool-call",
        provider="oai",
        tier="fast",
        content=content,
        finish_reason="tool_calls",
        tool_calls=list(calls),
        usage=Usage(prompt_tokens=10, completion_tokens=9),
        attempts=1,
        latency_ms=5.0,
        completed_at="2026-12-05T00:00:00Z",
    )
