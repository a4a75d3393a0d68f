"""Streamed answer chunks, executor -> gateway, on core NATS `switchyard.chunk.<task_id>`.

Chunks are not stored (the result event on JetStream carries the whole answer), so they are small JSON
objects, not CloudEvents. `seq` starts at 0 and increases by one per chunk, so a receiver detects a gap and
ends its client's stream with an explicit error instead of a silently truncated answer.

    {"seq": 0, "delta": "The capital"}                         text
    {"seq": 7, "done": true, "finish_reason": "stop"}          the end (the result event follows)
    {"seq": 3, "error": {"code": "...", "message": "..."}}     the stream broke after output began
    {"seq": 0, "reset": true, "model": "openai/gpt-4o-mini"}   a failover before any text was sent
    {"seq": 0, "thinking": "Let me see"}                       the model's reasoning, before its text
    {"seq": 4, "signature": "EqQB..."}                         ends a thinking block (its signature)
    {"seq": 5, "redacted": "EmwK..."}                          a whole redacted thinking block
    {"seq": 1, "delta": " Paris", "logprobs": [{"token": " Paris", "logprob": -0.01, ...}]}
                                                               text with its tokens' log probabilities
    {"seq": 2, "delta": "Oslo", "choice": 1}                   text of the second answer (`n` > 1)

`choice` says which of several answers (`n`) a text or reasoning chunk belongs to: 0, the first, is left
out, so a single answer's chunks never carry it; the answers' chunks come interleaved as they are generated.
A thinking block runs from its first `thinking` chunk to its `signature`; text of the same answer never
interrupts one.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from switchyard.common.events.logprobs import TokenLogprob
from switchyard.common.events.tasks import ThinkingBlock


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
    thinking: str | None = None
    signature: str | None = None
    redacted: str | None = None
    logprobs: list[TokenLogprob] | None = None  # the delta's tokens, when the request asked for them
    choice: int = 0  # which answer a text or reasoning chunk is of (`n` > 1); left out when 0

    def reasoning(self) -> bool:
        """A chunk of the model's reasoning (thinking text, a signature, a redacted block)."""
        return bool(self.thinking) or self.signature is not None or self.redacted is not None


def thinking_chunk(block: ThinkingBlock) -> Chunk:
    """A whole thinking block as the one chunk that carries it (for an answer sent whole; `seq` 0)."""
    if block.type == "redacted_thinking":
        return Chunk(seq=0, redacted=block.data or "")
    return Chunk(seq=0, thinking=block.thinking or "", signature=block.signature or "")


def encode_chunk(chunk: Chunk) -> bytes:
    # `seq` has no default, so it is always kept; everything left at its default is left out.
    data: dict[str, Any] = chunk.model_dump(exclude_defaults=True)
    return orjson.dumps(data)


def decode_chunk(raw: bytes) -> Chunk:
    return Chunk.model_validate(orjson.loads(raw))
