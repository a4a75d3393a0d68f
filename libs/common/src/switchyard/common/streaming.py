"""Streamed answer chunks, executor -> gateway, on core NATS `switchyard.chunk.<task_id>`.

Chunks are not stored (the result event on JetStream carries the whole answer), so they are small JSON
objects, not CloudEvents. `seq` starts at 0 and increases by one per chunk, so a receiver detects a gap and
ends its client's stream with an explicit error instead of a silently truncated answer.

    {"seq": 0, "model": "openai/gpt-4o-mini"}                  the model the executor calls, as it begins
    {"seq": 1, "delta": "The capital"}                         text
    {"seq": 7, "done": true, "finish_reason": "stop"}          the end (the result event follows)
    {"seq": 3, "error": {"code": "...", "message": "..."}}     the stream broke after output began
    {"seq": 1, "reset": true, "model": "openai/gpt-4o"}        a failover before any text was sent
    {"seq": 0, "thinking": "Let me see"}                       the model's reasoning, before its text
    {"seq": 4, "signature": "EqQB..."}                         ends a thinking block (its signature)
    {"seq": 5, "redacted": "EmwK..."}                          a whole redacted thinking block
    {"seq": 1, "delta": " Paris", "logprobs": [{"token": " Paris", "logprob": -0.01, ...}]}
                                                               text with its tokens' log probabilities
    {"seq": 2, "delta": "Oslo", "choice": 1}                   text of the second answer (`n` > 1)
    {"seq": 5, "finish_reason": "length"}                      the first of several answers ended
    {"seq": 9, "finish_reason": "tool_calls", "choice": 1,     the second ended, with its tool calls
     "tool_calls": [{"id": "call_1", "function": {...}}]}
    {"seq": 6, "finish_reason": "stop", "choice": 1,           the second ended, refused (its refusal)
     "refusal": "I'm sorry, ..."}
    {"seq": 3, "tool_call": {"index": 0, "id": "call_1",       a tool call begins: its id, whole name
     "name": "get_weather", "arguments": "{\"ci"}}             and first arguments (of an Anthropic
                                                               call, none yet) ...
    {"seq": 4, "tool_call": {"index": 0, "arguments": "ty\""}} ... then its arguments stream in pieces
    {"seq": 0, "delta": "Hi", "usage": {"prompt_tokens": 1200,  the first output, with the prompt's count:
     "cache_read_tokens": 1000}}                               the provider's, where it gave one as its
                                                               stream began, else the router's estimate

A streamed answer's first chunk names the model the executor begins calling, before any output (so
that a response that starts before its first output, `SWITCHYARD_STREAM_KEEPALIVE_S`, can say which model
it is waiting for); a reset names the next one. An answer judged before it is sent (a cascade, a race)
names its model on its first output chunk instead, once it is known. Neither is output: the wait for the
first output goes on after them.

`choice` says which of several answers (`n`) a chunk belongs to: 0, the first, is left out, so a single
answer's chunks never carry it; the answers' chunks come interleaved as they are generated. Each of several
answers ends with a chunk of its `finish_reason` (and its tool calls or refusal, if any) but no `done`,
sent as soon as it ended, after its last text and before the `done` chunk (other answers may go on
between); a single answer has no such chunk: its end is the `done` chunk, as ever (its tool calls and
refusal come with the result). The `done` chunk ends the stream and says the first answer's finish
reason. A thinking block runs from its first `thinking` chunk to its `signature`; text of the same answer
never interrupts one. A tool call's pieces (`tool_call`, by its `index` in the answer) come as the provider
streams them, where it does (OpenAI-compatible and Anthropic models), and add up to the call's arguments;
the answer's end still carries every call whole (of several answers: its end chunk; else the result), for
the faces that send calls whole.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from switchyard.common.events.logprobs import TokenLogprob
from switchyard.common.events.tasks import ThinkingBlock, ToolCall, Usage


class ChunkError(BaseModel):
    code: str
    message: str


class ToolCallPiece(BaseModel):
    """A piece of a streamed tool call: the call's `id` and function `name` with its first piece, then
    more of its `arguments` (JSON text, whole once the call ends)."""

    index: int  # which call of the answer
    id: str | None = None
    name: str | None = None
    arguments: str = ""


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
    choice: int = 0  # which answer a chunk is of (`n` > 1); left out when 0
    tool_calls: list[ToolCall] | None = None  # on the end of one of several answers: its tool calls
    refusal: str | None = None  # on the end of one of several answers: its refusal
    tool_call: ToolCallPiece | None = None  # a piece of a tool call as it streams
    usage: Usage | None = None  # on the first output chunk: the prompt's count (the provider's or router's)

    def reasoning(self) -> bool:
        """A chunk of the model's reasoning (thinking text, a signature, a redacted block)."""
        return bool(self.thinking) or self.signature is not None or self.redacted is not None

    def names_model(self) -> bool:
        """A chunk that only names the model answering (the stream's start, or a reset to the next
        candidate): no output yet."""
        return self.model is not None and not (
            self.delta
            or self.logprobs
            or self.reasoning()
            or self.tool_call
            or self.finish_reason
            or self.done
            or self.error
        )

    def ends_answer(self) -> bool:
        """The end of one of several answers (`choice`): its finish reason, not the stream's end."""
        return self.finish_reason is not None and not self.done


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
