"""The Responses face's stream: a Response as its typed events, each numbered by `sequence_number`
(response.created, response.in_progress, the output items with their parts and deltas, response.completed;
response.failed after a break). The items and the whole Response they end with are `responses_render.py`'s."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchyard.common.events import (
    FunctionCall,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    ThinkingBlock,
    TokenLogprob,
    ToolCall,
)
from switchyard.common.streaming import Chunk, ToolCallPiece, thinking_chunk
from switchyard.gateway.errors import APIError, GatewayStopping, TaskTimeout
from switchyard.gateway.outcomes import Fault, failure_error, head_model, in_order
from switchyard.gateway.responses import MESSAGE_ITEM, REASONING_ITEM
from switchyard.gateway.responses_render import (
    Named,
    call_item,
    failure_json,
    logprobs_json,
    message_item,
    reasoning_item,
    response_body,
    shell,
    text_part,
)
from switchyard.gateway.responses_tools import CustomInput
from switchyard.gateway.tasks import Stopped, TimedOut


class _Events:
    """Numbered SSE events (`sequence_number` from 0), as the Responses API streams them."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **data: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass
class _Calling:
    """A tool call's item, open: its id, output index and call (id, name), what of its arguments came and
    what went out in deltas (a custom tool's: of its text, read from the arguments by `custom`)."""

    item_id: str
    index: int
    call: ToolCall
    custom: CustomInput | None
    arguments: list[str] = field(default_factory=list)
    sent: str = ""


class _Output:
    """A streamed response's output items, numbered as they open: reasoning items (one per thinking
    block), the message (opened at its first text), then the function calls (each opened at its first
    piece, the message or call before it done then, as OpenAI ends an item before the next begins)."""

    def __init__(self, task: TaskSubmitted, event: _Events, named: Named) -> None:
        self.task = task
        self.event = event
        self.named = named
        self.index = 0
        self.thinking: ThinkingBlock | None = None  # the thinking block being streamed
        self.thoughts = 0
        self.message: int | None = None  # the message item's output index, once open
        self.text: list[str] = []
        self.tokens: list[TokenLogprob] = []  # the text's, as they came (the message's, if it ends early)
        self.said = False  # the message ended before the answer did (a call followed it)
        self.calls: dict[int, _Calling | None] = {}  # the calls that streamed, by index (None: done)
        self.waiting: list[ToolCallPiece] = []  # pieces of calls interleaved with the open one's

    def _where(self, item_id: str) -> dict[str, Any]:
        return {"item_id": item_id, "output_index": self.index}

    def reasoning(self, chunk: Chunk) -> list[bytes]:
        """A thinking chunk: the item opens at a block's first text, its summary streams, and the block's
        signature closes it; a redacted block is an item whole."""
        out: list[bytes] = []
        if chunk.redacted is not None:
            block = ThinkingBlock(type="redacted_thinking", data=chunk.redacted)
            item = reasoning_item(self.task, self.thoughts, block)
            out.append(self.event("response.output_item.added", output_index=self.index, item=item))
            out.append(self.event("response.output_item.done", output_index=self.index, item=item))
            self.thoughts += 1
            self.index += 1
            return out
        item_id = f"{REASONING_ITEM}{self.task.task_id}_{self.thoughts}"
        at = {**self._where(item_id), "summary_index": 0}
        if self.thinking is None:
            self.thinking = ThinkingBlock(thinking="", signature="")
            empty = reasoning_item(self.task, self.thoughts, None)
            out.append(self.event("response.output_item.added", output_index=self.index, item=empty))
            out.append(self.event("response.reasoning_summary_part.added", part=_summary(""), **at))
        if chunk.thinking:
            self.thinking.thinking = (self.thinking.thinking or "") + chunk.thinking
            out.append(self.event("response.reasoning_summary_text.delta", delta=chunk.thinking, **at))
        if chunk.signature is not None:
            block = ThinkingBlock(thinking=self.thinking.thinking, signature=chunk.signature)
            text = block.thinking or ""
            item = reasoning_item(self.task, self.thoughts, block)
            out.append(self.event("response.reasoning_summary_text.done", text=text, **at))
            out.append(self.event("response.reasoning_summary_part.done", part=_summary(text), **at))
            out.append(self.event("response.output_item.done", output_index=self.index, item=item))
            self.thinking = None
            self.thoughts += 1
            self.index += 1
        return out

    def delta(self, text: str, tokens: list[TokenLogprob] | None = None) -> list[bytes]:
        """Streamed text; after a call began, none (the completed response has it: the message's item
        ended, or would open after the calls, where the response does not have it)."""
        return [] if self.said or self.calls else self._text(text, tokens)

    def _text(self, text: str, tokens: list[TokenLogprob] | None) -> list[bytes]:
        out = [] if self.message is not None else self._open_message()
        self.text.append(text)
        self.tokens += tokens or []
        logprobs = logprobs_json(tokens)
        return [*out, self.event("response.output_text.delta", delta=text, logprobs=logprobs, **self._at())]

    def _at(self) -> dict[str, Any]:
        return {
            "item_id": f"{MESSAGE_ITEM}{self.task.task_id}",
            "output_index": self.message,
            "content_index": 0,
        }

    def _open_message(self) -> list[bytes]:
        self.message = self.index
        self.index += 1
        empty = text_part("", None)
        item = {**message_item(self.task, "", status="in_progress"), "content": []}
        return [
            self.event("response.output_item.added", output_index=self.message, item=item),
            self.event("response.content_part.added", part=empty, **self._at()),
        ]

    def finish(self, done: TaskCompleted, *, status: str) -> list[bytes]:
        """The rest of an answer: thinking not streamed (an answer sent whole), its text, its calls (those
        streamed ended, the others whole). The text's done events carry all its tokens, as the completed
        response does (the task's result)."""
        out: list[bytes] = []
        if not self.thoughts and self.thinking is None:
            for block in done.thinking or []:
                out += self.reasoning(thinking_chunk(block))
        content = "".join(self.text) or done.content
        if done.refusal and not content:
            out += self._refusal(done.refusal, status)
        elif not self.said and (content or not done.tool_calls):
            if self.message is None:
                out += self._open_message()
                if content:
                    out += self._text(content, done.logprobs)  # an answer sent whole: one delta
            out += self._message_done(content, done.logprobs, status)
        for n, call in enumerate(done.tool_calls or []):
            if n not in self.calls:
                out += self._open_call(n, call)
            if self.calls[n] is not None:
                out += self._end_call(n, call)
        return out + self._end_calls()  # any the answer does not have ended as they came

    def _end_calls(self) -> list[bytes]:
        """The calls streaming ended, with the arguments that came (`{}` if none, as the result has)."""
        out = []
        for n, calling in self.calls.items():
            if calling is not None:
                out += self._end_call(n, calling.call, "".join(calling.arguments) or "{}")
        return out

    def _message_done(self, content: str, tokens: list[TokenLogprob] | None, status: str) -> list[bytes]:
        part = text_part(content, tokens)
        item = message_item(self.task, content, status=status, tokens=tokens)
        return [
            self.event("response.output_text.done", text=content, logprobs=part["logprobs"], **self._at()),
            self.event("response.content_part.done", part=part, **self._at()),
            self.event("response.output_item.done", output_index=self.message, item=item),
        ]

    def piece(self, piece: ToolCallPiece) -> list[bytes]:
        """A piece of a tool call. One call's item is open at a time, as OpenAI streams them: a piece of
        another call waits while the open call's arguments are not yet whole JSON (providers stream calls
        one after another), and goes at the next piece after them (pieces still waiting at the answer's
        end: their calls go whole from it)."""
        current = next((n for n, c in self.calls.items() if c is not None), None)
        if current is not None and piece.index != current:
            if not self._whole(current):
                self.waiting.append(piece)
                return []
            if self.waiting:
                waiting, self.waiting = self.waiting, []
                return [e for p in (*waiting, piece) for e in self.piece(p)]
        return self._piece(piece)

    def _whole(self, n: int) -> bool:
        calling = self.calls[n]
        try:
            orjson.loads("".join(calling.arguments) if calling is not None else "")
        except orjson.JSONDecodeError:
            return False
        return True

    def _piece(self, piece: ToolCallPiece) -> list[bytes]:
        """A call's piece: its first opens its item (ending the message or the call before it), each the
        arguments it adds as a delta (a custom tool's: the text they add, once it can be read)."""
        out: list[bytes] = []
        calling = self.calls.get(piece.index)
        if piece.index not in self.calls:
            if self.message is not None and not self.said:
                out += self._message_done("".join(self.text), self.tokens, "completed")
                self.said = True
            out += self._end_calls()
            function = FunctionCall.model_construct(name=piece.name or "", arguments="")
            out += self._open_call(
                piece.index, ToolCall(id=piece.id or f"call_{piece.index}", function=function)
            )
            calling = self.calls[piece.index]
        if calling is None or not piece.arguments:
            return out
        calling.arguments.append(piece.arguments)
        added = calling.custom.add(piece.arguments) if calling.custom is not None else piece.arguments
        if added:
            out.append(self._call_delta(calling, added))
        return out

    def _open_call(self, n: int, call: ToolCall) -> list[bytes]:
        started = call_item(self.task, n, call, status="in_progress", arguments="", named=self.named)
        custom = CustomInput() if started["type"] == "custom_tool_call" else None
        self.calls[n] = _Calling(started["id"], self.index, call, custom)
        self.index += 1
        return [self.event("response.output_item.added", output_index=self.index - 1, item=started)]

    def _call_delta(self, calling: _Calling, text: str) -> bytes:
        calling.sent += text
        kind = "custom_tool_call_input" if calling.custom is not None else "function_call_arguments"
        where = {"item_id": calling.item_id, "output_index": calling.index}
        return self.event(f"response.{kind}.delta", delta=text, **where)

    def _end_call(self, n: int, call: ToolCall, arguments: str | None = None) -> list[bytes]:
        """A call's end: what of its arguments (its text) no delta carried, then its done events, whole."""
        calling = self.calls[n]
        assert calling is not None
        done = call_item(self.task, n, call, arguments=arguments, named=self.named)
        whole = done["input"] if calling.custom is not None else done["arguments"]
        out = []
        if whole.startswith(calling.sent) and len(whole) > len(calling.sent):
            out.append(self._call_delta(calling, whole[len(calling.sent) :]))
        where = {"item_id": done["id"], "output_index": calling.index}
        if calling.custom is not None:
            out.append(self.event("response.custom_tool_call_input.done", input=whole, **where))
        else:
            args = {"arguments": whole, "name": done["name"]}
            out.append(self.event("response.function_call_arguments.done", **args, **where))
        out.append(self.event("response.output_item.done", output_index=calling.index, item=done))
        self.calls[n] = None
        return out

    def _refusal(self, refusal: str, status: str) -> list[bytes]:
        """A refusal instead of the answer's text: the message with its `refusal` part, whole in one delta
        (it comes with the result), in the events OpenAI streams one with."""
        self.message = self.index
        self.index += 1
        opened = {**message_item(self.task, "", status="in_progress"), "content": []}
        part = {"type": "refusal", "refusal": refusal}
        item = message_item(self.task, "", status=status, refusal=refusal)
        return [
            self.event("response.output_item.added", output_index=self.message, item=opened),
            self.event("response.content_part.added", part={**part, "refusal": ""}, **self._at()),
            self.event("response.refusal.delta", delta=refusal, **self._at()),
            self.event("response.refusal.done", refusal=refusal, **self._at()),
            self.event("response.content_part.done", part=part, **self._at()),
            self.event("response.output_item.done", output_index=self.message, item=item),
        ]


def _summary(text: str) -> dict[str, str]:
    return {"type": "summary_text", "text": text}


async def stream_events(
    task: TaskSubmitted,
    head: list[Chunk | TaskCompleted],
    rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed],
    *,
    timeout_s: float,
    include_usage: bool = True,
    fields: dict[str, Any] | None = None,
    created: int | None = None,
    keep: Callable[[dict[str, Any]], Awaitable[bool]] | None = None,
    named: Named = None,
) -> AsyncIterator[bytes]:
    """response.created and .in_progress, a reasoning item per thinking block, the message item (opened at
    its first text) with its output_text part and deltas, then each function call item (opened at its
    first piece, its arguments streamed as they come; sent whole from the answer if none came), then
    response.completed (or .incomplete) with the whole response and its usage. A break after output
    began is an `error` event, then response.failed (status `failed`, its `error`), the end clients wait
    for: never a completion, so never a silently cut answer. `fields` are a stored conversation's (see
    `shell`); `keep` stores the whole response before its last event says whether it was (`store`), so
    a follow-up sent on that event finds it; `named`: how the client names its tools (`call_item`)."""
    event = _Events()
    created = int(time.time()) if created is None else created
    model = head_model(head) or task.request.model
    started = shell(task, model=model, created=created, status="in_progress", fields=fields)
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    output = _Output(task, event, named)

    def failed(said: APIError, message: str) -> Iterator[bytes]:
        yield event("error", code=said.code, message=message, param=said.param)
        error = failure_json(said, message)
        yield event("response.failed", response={**started, "status": "failed", "error": error})

    try:
        async for item in in_order(head, rest):
            if isinstance(item, Fault):
                for out in failed(failure_error(item.code, item.message), item.message):
                    yield out
                return
            if isinstance(item, Chunk):
                events = (
                    output.piece(item.tool_call)
                    if item.tool_call is not None
                    else output.reasoning(item)
                    if item.reasoning()
                    else output.delta(item.delta or "", item.logprobs)
                    if item.delta or item.logprobs  # tokens may come without text (a cut character's end)
                    else []
                )
                for out in events:
                    yield out
                continue
            body = response_body(task, item, created=created, fields=fields, named=named)
            for out in output.finish(item, status=body["status"]):
                yield out
            if keep is not None:
                body["store"] = await keep(body)
            yield event(
                "response.completed" if body["status"] == "completed" else "response.incomplete",
                response=body,
            )
            return
    except TimedOut as exc:
        for out in failed(TaskTimeout(str(exc)), str(exc)):
            yield out
    except Stopped:
        for out in failed(GatewayStopping(Stopped.message), Stopped.message):
            yield out
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
