"""Streamed answer chunks, executor -> gateway, on core NATS `switchyard.chunk.<task_id>`.

Chunks are not stored (the result event on JetStream carries the whole answer), so they are small JSON
objects, not CloudEvents. `seq` starts at 0 and increases by one per chunk, so a receiver detects a gap and
ends its client's stream with an explicit error instead of a silently truncated answer.

    {"seq": 0, "delta": "The capital"}                         text
    {"seq": 7, "done": true, "finish_reason": "stop"}          the end (the result event follows)
    {"seq": 3, "error": {"code": "...", "message": "..."}}     the stream broke after output began
    {"seq": 0, "reset": true, "model": "openai/gpt-4o-mini"}   a failover before any text was sent
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel


class ChunkError(BaseModel):
    code: str
    message: str


class Chunk(BaseModel):
    seq: int
    delta: str | None = None
    done: bool = False
    finish_reason: str | None = None
    error: ChunkError | None = None
    reset: bool = False
    model: str | None = None


def encode_chunk(chunk: Chunk) -> bytes:
    # `seq` has no default, so it is always kept; everything left at its default is left out.
    data: dict[str, Any] = chunk.model_dump(exclude_defaults=True)
    return orjson.dumps(data)


def decode_chunk(raw: bytes) -> Chunk:
    return Chunk.model_validate(orjson.loads(raw))
