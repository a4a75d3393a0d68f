"""Streamed chunks to the gateway (format: `switchyard.common.streaming`), numbered without gaps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter

from switchyard.common import subjects
from switchyard.common.events import TokenLogprob, ToolCall, Usage
from switchyard.common.streaming import Chunk, ChunkError, encode_chunk
from switchyard.executor.providers.base import ToolCallDelta

Publish = Callable[[str, bytes], Awaitable[None]]
# A delta's tokens dumped in one call: a third of the time of dumping each (a whole answer's may be many).
TOKENS = TypeAdapter(list[TokenLogprob])


class ChunkSink:
    def __init__(self, publish: Publish, *, tenant_id: str, task_id: str, starts: bool = True) -> None:
        """`starts`: the stream's reader takes a first chunk naming the model called, before any output
        (`ChatRequest.stream_start`); without, the first output chunk names it (`start`)."""
        self._publish = publish
        self._starts = starts
        self._subject = subjects.chunk_subject(tenant_id, task_id)
        self._seq = 0
        self._model: str | None = None  # the model answering, until a chunk has named it
        # The prompt's count for the first output chunk: the provider's (`counted`), else the router's
        self._counted: dict[str, Any] | None = None
        self._estimated: dict[str, Any] | None = None
        self.text_sent = False

    async def _send(self, chunk: Chunk) -> None:
        await self._publish(self._subject, encode_chunk(chunk))
        self._seq += 1

    def announce(self, model: str) -> None:
        """`model` is the one answering: the next text chunk names it, so the client's first chunk does
        (an answer judged before it is sent: a cascade's, a race's)."""
        self._model = model

    async def start(self, model: str) -> None:
        """The stream begins with `model`, which is called now: a chunk names it before any output (a
        response that starts before its first output says which model it waits for), when its reader
        takes one; else its first output chunk names it."""
        if not self._starts:
            self._model = model
            return
        self._model = None
        await self._send(Chunk(seq=self._seq, model=model))

    def estimated(self, prompt_tokens: int) -> None:
        """The router's count of the prompt: the first output chunk carries it unless the provider
        counted it (`counted`). The gateway's Anthropic face shows it in `message_start`."""
        self._estimated = {"prompt_tokens": prompt_tokens} if prompt_tokens else None

    def counted(self, usage: Usage) -> None:
        """The provider counted the prompt as its stream began (once output went, it is not sent)."""
        self._counted = usage.model_dump(exclude_defaults=True)

    async def delta(self, text: str, logprobs: Sequence[TokenLogprob] = (), choice: int = 0) -> None:
        """Answer text, with its tokens' log probabilities when the request asked for them; `choice`: which
        of several answers it is of. Tokens may come without text (a token holding part of a character:
        its text comes with a later one)."""
        if logprobs or (choice and text):
            chunk: dict[str, Any] = {"seq": self._seq, "delta": text, **self._take_first()}
            if logprobs:
                # compact: a token's `bytes` only where they are not its text's UTF-8 (None is left out)
                chunk["logprobs"] = TOKENS.dump_python(list(logprobs), exclude_none=True)
            if choice:
                chunk["choice"] = choice
            data = orjson.dumps(chunk)
        elif text:
            # Nearly every chunk is one of these: encoded straight from a dict (what `encode_chunk` makes
            # of `Chunk(seq=, delta=)`), without building and dumping the model for each token.
            if self._model is None and self.text_sent:
                data = orjson.dumps({"seq": self._seq, "delta": text})
            else:
                data = orjson.dumps({"seq": self._seq, "delta": text, **self._take_first()})
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
            await self._send(Chunk(seq=self._seq, thinking=text, choice=choice, **self._take_first()))
        if signature is not None:
            chunk = Chunk(seq=self._seq, signature=signature, choice=choice, **self._take_first())
            await self._send(chunk)
        if redacted is not None:
            chunk = Chunk(seq=self._seq, redacted=redacted, choice=choice, **self._take_first())
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
        chunk: dict[str, Any] = {"seq": self._seq, "tool_call": call, **self._take_first()}
        if piece.choice:
            chunk["choice"] = piece.choice
        await self._publish(self._subject, orjson.dumps(chunk))
        self._seq += 1
        self.text_sent = True

    def _take_first(self) -> dict[str, Any]:
        """What a chunk carries besides its own: the model answering, until a chunk named it; the prompt's
        count, on the first output chunk."""
        extra: dict[str, Any] = {}
        if self._model is not None:
            extra["model"], self._model = self._model, None
        if not self.text_sent and (usage := self._counted or self._estimated):
            extra["usage"] = usage
            self._counted = self._estimated = None
        return extra

    async def reset(self, *, model: str) -> None:
        """The next candidate takes over; allowed only while no text was sent. The reset names it."""
        if self.text_sent:
            raise RuntimeError("a stream cannot be reset after text was sent")
        self._model = self._counted = None  # the failed candidate's count too
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
            **self._take_first(),
        )
        await self._send(chunk)
        self.text_sent = True

    async def done(self, *, finish_reason: str) -> None:
        await self._send(Chunk(seq=self._seq, done=True, finish_reason=finish_reason))
