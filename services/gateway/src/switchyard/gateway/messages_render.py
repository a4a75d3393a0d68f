"""The Anthropic face's answers: a Message, or the real Anthropic SSE event sequence (message_start, ping,
then per content block content_block_start, content_block_delta..., content_block_stop, then
message_delta, message_stop), thinking blocks first, then text, then tool_use (each call's input in
pieces as the model streams them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted, ToolCall, Usage
from switchyard.common.streaming import Chunk, ToolCallPiece, thinking_chunk
from switchyard.gateway.errors import ANTHROPIC_TYPES, anthropic_wording
from switchyard.gateway.outcomes import Fault, failure_error, head_model, in_order
from switchyard.gateway.schemas import thinking_json
from switchyard.gateway.tasks import Stopped, TimedOut

MESSAGE_ID = "msg_"  # a message's id is this and its task's id
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def tool_use_blocks(done: TaskCompleted) -> list[dict[str, Any]]:
    """The answer's tool calls as `tool_use` blocks, `input` always an object (`arguments_object`)."""
    return [
        {"type": "tool_use", "id": call.id, "name": call.function.name, "input": arguments_object(call)}
        for call in done.tool_calls or []
    ]


def arguments_object(call: ToolCall) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` and Gemini's `args` always are (a client
    calls its function with it): arguments an OpenAI-compatible server gave as something else (`null`, a
    list, text that is not JSON) are kept under `input`."""
    return _object_of(call.function.arguments)


def _object_of(text: str) -> dict[str, Any]:
    try:
        arguments = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        arguments = text
    if not isinstance(arguments, dict):
        arguments = {} if arguments is None else {"input": arguments}
    return arguments


def said(done: TaskCompleted) -> str:
    """The answer's text; a refusal's words (Anthropic's API has no field of its own for them: its
    `stop_reason` says `refusal`)."""
    return done.content or done.refusal or ""


def shown_model(task: TaskSubmitted, model: str, asked: str | None) -> str:
    """A message's `model`: the name the request gave when the model it named answered
    (`claude-sonnet-5-5`, which Switchyard runs as `anthropic/claude-sonnet-5-5`), the answering model's id
    when another did (`auto`, a fallback; `x-switchyard-model` always says it). Claude Code sends the
    thinking blocks of an earlier turn back only when the turn's `model` is the one it asks for: told
    another name, it dropped them from every tool loop, and Claude lost its reasoning between tool calls."""
    return asked if asked is not None and model == task.request.model else model


def message_json(task: TaskSubmitted, done: TaskCompleted, *, asked: str | None = None) -> bytes:
    text = [{"type": "text", "text": said(done)}] if said(done) or not done.tool_calls else []
    return orjson.dumps(
        {
            "id": f"{MESSAGE_ID}{task.task_id}",
            "type": "message",
            "role": "assistant",
            "model": shown_model(task, done.model, asked),
            "content": thinking_json(done.thinking) + text + tool_use_blocks(done),
            **stop_of(done),
            "usage": usage_json(done.usage),
        }
    )


def usage_json(usage: Usage, *, cache: bool = False) -> dict[str, Any]:
    """Anthropic's usage: `input_tokens` are the prompt tokens neither read from nor written to the
    provider's prompt cache, which have fields of their own when there are any (from any provider:
    OpenAI's and Gemini's cache hits are reads), or when `cache` asks for them (0 replaces what a stream's
    `message_start` said)."""
    read, written = usage.cache_read_tokens, usage.cache_write_tokens
    out: dict[str, Any] = {
        "input_tokens": max(usage.prompt_tokens - read - written, 0),
        "output_tokens": usage.completion_tokens,
    }
    if read or written or cache:
        out["cache_read_input_tokens"] = read
        out["cache_creation_input_tokens"] = written
    return out


def stop_of(done: TaskCompleted) -> dict[str, Any]:
    """`stop_reason` and `stop_sequence`: a stop sequence is named where the provider named it (an
    Anthropic model); from other providers an answer a stop sequence ended reads `end_turn`; a refused
    answer reads `refusal`."""
    if done.stop_sequence is not None:
        return {"stop_reason": "stop_sequence", "stop_sequence": done.stop_sequence}
    reason = "content_filter" if done.refusal else done.finish_reason
    return {"stop_reason": STOP_REASONS.get(reason, "end_turn"), "stop_sequence": None}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


PING = _event("ping", {})  # Anthropic's keep-alive, which its SDKs skip


def _error(message: str, type_: str = "api_error", code: str | None = None) -> bytes:
    return _event("error", {"error": {"type": type_, "message": message, **({"code": code} if code else {})}})


# Stream faults that say "send the request again", as Anthropic's own mid-stream `overloaded_error` does
# (what clients retry on: Claude Code reads the type); a stopping gateway's is said the same way (`Stopped`).
RETRY_FAULTS = ("executor_stopping",)


def fault_event(fault: Fault) -> bytes:
    """A stream's fault as Anthropic's `error` event: the type its failure has on this face when it comes
    before the stream (`overloaded_error` for every candidate busy, `timeout_error`, ...), our code beside
    it, so a client acts on a mid-stream failure as on the same failure answered with its status. The
    message is the fault's own."""
    if fault.code in RETRY_FAULTS:
        return _error(fault.message, "overloaded_error", fault.code)
    status, _ = anthropic_wording(failure_error(fault.code, fault.message))
    type_ = ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return _error(fault.message, type_, fault.code)


class _Call:
    """A tool call as its pieces stream: its arguments so far, how many of their characters went out as
    `input_json_delta`s, whether its block was opened, and whether its arguments are held (they began
    as something other than an object)."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments = ""
        self.sent = 0
        self.opened = self.held = False


def _complete(arguments: str) -> bool:
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return False
    return True


class _Blocks:
    """A streamed message's content blocks, opened as their first delta comes (as Anthropic streams them):
    thinking blocks, then text, then tool_use; each gets the next index and is stopped before the next
    one starts.

    A tool call's block starts at its first piece that names it, and its arguments go out as they come
    once they begin with `{`: Anthropic's `input` is always an object, so arguments that begin otherwise
    (`null`, a list, text that is not JSON, from an OpenAI-compatible server) are held and go out as one
    delta of the object `arguments_object` makes of them, when the block stops. Arguments that began as an
    object but do not end as one (an answer cut by `max_tokens`) are left as sent: Anthropic streams such
    a call so too, and its SDK parses the partial JSON. One call streams at a time, as in Anthropic's
    stream: a piece of another call stops the open one once its arguments are complete JSON (providers
    stream calls one after another); pieces of a call that come while the open one's are incomplete
    (interleaved) wait, and its block starts with them at its next piece after, or at the answer's end."""

    def __init__(self) -> None:
        self.count = 0
        self.open: str | None = None  # the type of the block being streamed
        self.calls: dict[int, _Call] = {}  # the tool calls whose pieces came, by their index
        self.live: _Call | None = None  # the call whose block is open

    def start(self, block: dict[str, Any]) -> list[bytes]:
        events = self.stop()
        events.append(_event("content_block_start", {"index": self.count, "content_block": block}))
        self.open = block["type"]
        return events

    def delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": self.count, "delta": delta})

    def stop(self) -> list[bytes]:
        if self.open is None:
            return []
        events = []
        if (call := self.live) is not None:
            if not call.sent:  # held (not an object) or empty: the object it makes, whole
                events.append(self._json(orjson.dumps(_object_of(call.arguments)).decode()))
            self.live = None
        self.open = None
        self.count += 1
        return [*events, _event("content_block_stop", {"index": self.count - 1})]

    def thinking(self, chunk: Chunk) -> list[bytes]:
        """A reasoning chunk: a thinking block's text, its signature (which stops it), or a redacted one."""
        if chunk.redacted is not None:
            return [*self.start({"type": "redacted_thinking", "data": chunk.redacted}), *self.stop()]
        events = [] if self.open == "thinking" else self.start({"type": "thinking", "thinking": ""})
        if chunk.thinking:
            events.append(self.delta({"type": "thinking_delta", "thinking": chunk.thinking}))
        if chunk.signature is not None:
            events += [self.delta({"type": "signature_delta", "signature": chunk.signature}), *self.stop()]
        return events

    def text(self, text: str) -> list[bytes]:
        events = [] if self.open == "text" else self.start({"type": "text", "text": ""})
        return [*events, self.delta({"type": "text_delta", "text": text})] if text else events

    def piece(self, piece: ToolCallPiece) -> list[bytes]:
        """A piece of a streamed tool call (`ToolCallPiece`: its id and name first, then arguments)."""
        call = self.calls.setdefault(piece.index, _Call())
        call.id, call.name = call.id or piece.id, call.name or piece.name
        call.arguments += piece.arguments
        if call is self.live:
            return self._flush(call)
        if call.opened or call.id is None or call.name is None:
            return []  # a stopped call's late piece, or a call not yet named: its end says it
        if self.live is not None and not _complete(self.live.arguments):
            return []  # interleaved with the open call's: they wait for it
        events: list[bytes] = []
        for n in sorted(self.calls):  # calls before it that waited go first, in the answer's order
            waited = self.calls[n]
            if n >= piece.index or waited.opened or waited.id is None or waited.name is None:
                continue
            events += self._open(waited)
            if not _complete(waited.arguments):
                return events  # it streams on: this call waits for it
        return events + self._open(call)

    def _open(self, call: _Call) -> list[bytes]:
        events = self.start({"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
        call.opened, self.live = True, call
        return events + self._flush(call)

    def _flush(self, call: _Call) -> list[bytes]:
        """The open call's arguments not yet sent, once they begin as an object (decided once: a file's
        contents come in thousands of pieces)."""
        if call.held or call.sent == len(call.arguments):
            return []
        if not call.sent:
            head = call.arguments.lstrip()[:1]
            call.held = head not in ("", "{")
            if head != "{":
                return []
        more, call.sent = call.arguments[call.sent :], len(call.arguments)
        return [self._json(more)]

    def _json(self, partial: str) -> bytes:
        return self.delta({"type": "input_json_delta", "partial_json": partial})

    def tool_calls(self, done: TaskCompleted) -> list[bytes]:
        """At the answer's end: the rest of the open call's arguments (from the whole call, by its id),
        then every call no piece opened, whole; a call whose block was stopped is not sent again."""
        streamed = {c.id for c in self.calls.values() if c.opened}
        events: list[bytes] = []
        if (live := self.live) is not None:
            whole = next((c.function.arguments for c in done.tool_calls or [] if c.id == live.id), None)
            if whole is not None and whole.startswith(live.arguments[: live.sent]):
                live.arguments = whole
                events += self._flush(live)
        events += self.stop()
        for block in tool_use_blocks(done):
            if block["id"] in streamed:
                continue
            events += self.start({**block, "input": {}})
            events += [self._json(orjson.dumps(block["input"]).decode()), *self.stop()]
        return events


def opening_usage(head: list[Chunk | TaskCompleted]) -> dict[str, Any]:
    """`message_start`'s usage: the prompt's input tokens, as Anthropic sends them there (clients show
    the context used from it). The first output chunk carries the provider's count where it gave one as
    its stream began (Anthropic's), else the router's (cl100k_base, and the media's by the most any
    provider's rule counts); an answer whole (a cache replay) its own. None known (a chunk from an executor
    before this): 0, as before. `message_delta` then says the final usage, input tokens included:
    Anthropic's SDKs take its counts as totals that replace these (anthropic-python's stream
    accumulator), never adding to them. (The gateway cannot count here: a published task's messages are
    let go, `tasks._shed`.)"""
    for item in head:
        if item.usage is not None and item.usage.prompt_tokens:
            return {**usage_json(item.usage), "output_tokens": 0}
    return {"input_tokens": 0, "output_tokens": 0}


async def stream_events(
    task: TaskSubmitted,
    head: list[Chunk | TaskCompleted],
    rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed],
    *,
    timeout_s: float,
    include_usage: bool = True,
    asked: str | None = None,
) -> AsyncIterator[bytes]:
    """A break after output began ends with an `error` event and no `message_stop`: never a silent cut.
    `asked`: the model as the request named it (`shown_model`)."""
    start: dict[str, Any] = {
        "id": f"{MESSAGE_ID}{task.task_id}",
        "type": "message",
        "role": "assistant",
        "model": shown_model(task, head_model(head) or task.request.model, asked),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": opening_usage(head),
    }
    yield _event("message_start", {"message": start})
    cached = "cache_read_input_tokens" in start["usage"]  # then message_delta says both, 0 or not
    yield _event("ping", {})
    blocks = _Blocks()
    sent = thought = False
    try:
        async for item in in_order(head, rest):
            if isinstance(item, Fault):
                yield fault_event(item)
                return
            if isinstance(item, Chunk):
                events: list[bytes] = []
                if item.tool_call is not None:
                    events = blocks.piece(item.tool_call)
                elif item.reasoning():
                    thought = True
                    events = blocks.thinking(item)
                elif item.delta:
                    sent = True
                    events = blocks.text(item.delta)
                for event in events:
                    yield event
                continue
            if not thought:  # an answer sent whole (a cache replay, an output guardrail): its thinking too
                for thinking in item.thinking or []:
                    for event in blocks.thinking(thinking_chunk(thinking)):
                        yield event
            if not sent and (said(item) or not item.tool_calls):
                for event in blocks.text(said(item)):
                    yield event
            for event in blocks.tool_calls(item):
                yield event
            delta = stop_of(item)
            usage = usage_json(item.usage, cache=cached)
            yield _event("message_delta", {"delta": delta, "usage": usage})
            yield _event("message_stop", {})
            return
    except TimedOut as exc:
        yield _error(str(exc), "timeout_error", "task_timeout")
    except Stopped:
        yield _error(Stopped.message, "overloaded_error", Stopped.code)
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
