"""Streamed chunks to the gateway (format: `switchyard.common.streaming`), numbered without gaps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter

from switchyard.common import subjects
from switchyard.common.events import TokenLogprob, ToolCall
from switchyard.common.streaming import Chunk, ChunkError, encode_chunk
from switchyard.executor.providers.base import ToolCallDelta

Publish = Callable[[str, bytes], Awaitable[None]]
# A delta's tokens dumped in one call: a third of the time of dumping each (a whole answer's may be many).
TOKENS = TypeAdapter(list[TokenLogprob])


class ChunkSink:
    def __init__(self, publish: Publish, *, task_id: str) -> None:
        self._publish = publish
        self._subject = subjects.chunk_subject(task_id)
        self._seq = 0
        self._unannounced: str | None = None  # the model answering, until a chunk has named it
        self.text_sent = False

    async def _send(self, chunk: Chunk) -> None:
        await self._publish(self._subject, encode_chunk(chunk))
        self._seq += 1

    def announce(self, model: str) -> None:
        """`model` is the one answering: the next text chunk names it, so the client's first chunk does."""
        self._unannounced = model

    async def delta(self, text: str, logprobs: Sequence[TokenLogprob] = (), choice: int = 0) -> None:
        """Answer text, with its tokens' log probabilities when the request asked for them; `choice`: which
        of several answers it is of. Tokens may come without text (a token holding part of a character:
        its text comes with a later one)."""
        if logprobs or (choice and text):
            chunk: dict[str, Any] = {"seq": self._seq, "delta": text}
            model = self._take_announced()
            if model is not None:
                chunk["model"] = model
            if logprobs:
                # compact: a token's `bytes` only where they are not its text's UTF-8 (None is left out)
                chunk["logprobs"] = TOKENS.dump_python(list(logprobs), exclude_none=True)
            if choice:
                chunk["choice"] = choice
            data = orjson.dumps(chunk)
        elif text:
            # Nearly every chunk is one of these: encoded straight from a dict (what `encode_chunk` makes
            # of `Chunk(seq=, delta=)`), without building and dumping the model for each token.
            if self._unannounced is None:
                data = orjson.dumps({"seq": self._seq, "delta": text})
            else:
                data = orjson.dumps({"seq": self._seq, "delta": text, "model": self._unannounced})
                self._unannounced = None
        else:
            return
        await self._publish(self._subject, data)
        self._seq += 1
        self.text_sent = True

    async def thinking(
        self,
        *,
        text: str = "",
        signature: str | None = None,
        redacted: str | None = None,
        choice: int = 0,
    ) -> None:
        """Reasoning: `text` of the open thinking block, then its `signature` (which ends it), or a whole
        `redacted` block; `choice` as a delta's. Output sent, as text is: no reset after it."""
        if text:
            await self._send(Chunk(seq=self._seq, thinking=text, model=self._take_announced(), choice=choice))
        if signature is not None:
            chunk = Chunk(seq=self._seq, signature=signature, model=self._take_announced(), choice=choice)
            await self._send(chunk)
        if redacted is not None:
            chunk = Chunk(seq=self._seq, redacted=redacted, model=self._take_announced(), choice=choice)
            await self._send(chunk)
        self.text_sent = self.text_sent or bool(text) or signature is not None or redacted is not None

    async def tool_call(self, piece: ToolCallDelta) -> None:
        """A piece of a tool call as it streams (its id and name first, then its arguments). Output sent,
        as text is. Encoded straight from a dict, as `encode_chunk` encodes the Chunk: a file's contents
        may come in tens of thousands of pieces (8 us each through the models, 2 us so)."""
        call: dict[str, Any] = {"index": piece.index}
        if piece.id is not None:
            call["id"] = piece.id
        if piece.name is not None:
            call["name"] = piece.name
        if piece.arguments:
            call["arguments"] = piece.arguments
        chunk: dict[str, Any] = {"seq": self._seq, "tool_call": call}
        model = self._take_announced()
        if model is not None:
            chunk["model"] = model
        if piece.choice:
            chunk["choice"] = piece.choice
        await self._publish(self._subject, orjson.dumps(chunk))
        self._seq += 1
        self.text_sent = True

    def _take_announced(self) -> str | None:
        model, self._unannounced = self._unannounced, None
        return model

    async def reset(self, *, model: str) -> None:
        """The next candidate takes over; allowed only while no text was sent. The reset names it."""
        if self.text_sent:
            raise RuntimeError("a stream cannot be reset after text was sent")
        self._unannounced = None
        await self._send(Chunk(seq=self._seq, reset=True, model=model))

    async def error(self, *, code: str, message: str) -> None:
        await self._send(Chunk(seq=self._seq, error=ChunkError(code=code, message=message)))

    async def answer_end(
        self,
        *,
        choice: int,
        finish_reason: str,
        tool_calls: Sequence[ToolCall] = (),
        refusal: str | None = None,
    ) -> None:
        """One of several answers ended (its finish reason, tool calls and refusal); the others may go on.
        Output sent, as text is."""
        chunk = Chunk(
            seq=self._seq,
            finish_reason=finish_reason,
            choice=choice,
            tool_calls=list(tool_calls) or None,
            refusal=refusal,
            model=self._take_announced(),
        )
        await self._send(chunk)
        self.text_sent = True

    async def done(self, *, finish_reason: str) -> None:
        await self._send(Chunk(seq=self._seq, done=True, finish_reason=finish_reason))
