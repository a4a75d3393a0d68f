"""Chat completions: a validated request becomes a task on the bus; its result becomes the response."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, NoReturn

import orjson
from pydantic import ValidationError

from switchyard.common.events import (
    ChatRequest,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    ThinkingBlock,
    TokenLogprob,
    ToolCall,
)
from switchyard.common.events.tasks import Priority
from switchyard.common.ids import new_id
from switchyard.common.streaming import Chunk, ToolCallPiece
from switchyard.gateway import bounds, key_policy
from switchyard.gateway.bodies import json_object, validated
from switchyard.gateway.content_parts import check_content_parts
from switchyard.gateway.errors import (
    InvalidRequest,
    TaskTimeout,
)
from switchyard.gateway.openai_rules import check_calls_answered, check_function, check_stream_options
from switchyard.gateway.outcomes import Fault, Observe, fault_sse, in_order, raise_for_failure, sse, sse_error
from switchyard.gateway.schemas import (
    UNSUPPORTED,
    ChatCompletionRequest,
    Unsupported,
    check_logprobs,
    check_prompt_size,
    check_tool_turns,
    chunk_body,
    completion_body,
    logprobs_json,
    narrow_allowed_tools,
    refuse_unknown,
    thinking_json,
    thinking_text,
    usage_json,
)
from switchyard.gateway.tasks import Stopped, TaskClient, TimedOut
from switchyard.gateway.tenants import Principal

PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high")
CHAT_PARTS = ("content", "tool_calls")  # a chat message's lists, counted by `bounds`


@bounds.reads
def parse_request(
    body: bytes,
    *,
    max_prompt_chars: int,
    unsupported: Unsupported = UNSUPPORTED,
    known: frozenset[str] | None = None,
    streams: bool = True,
) -> ChatCompletionRequest:
    """A chat request; `unsupported`: the fields refused when they ask (`schemas.UNSUPPORTED`), `known`:
    when given, the only fields taken (the task API's); `streams`: the API may stream its answer (the task
    API never does, and takes `stream_options` as the nothing it asks of it)."""
    raw = json_object(body)
    if known is not None:
        refuse_unknown(raw, known)
    bounds.check_conversation(raw.get("messages"), param="messages", parts=CHAT_PARTS)
    bounds.check_stop(raw.get("stop"), param="stop")
    parsed = validated(raw, ChatCompletionRequest, unsupported)
    if streams:
        check_stream_options(parsed.stream, parsed.stream_options)
    for n, tool in enumerate(parsed.tools or []):
        spec = tool.function
        check_function(spec.name, spec.parameters, at=f"tools.{n}.function", description=spec.description)
    check_logprobs(parsed)
    parsed.with_tool_places(
        {t.function.name: (f"tools.{n}.function", "parameters") for n, t in enumerate(parsed.tools or [])}
    )
    narrow_allowed_tools(parsed)
    check_tool_turns(parsed)  # a result answering no call first: it names the message at fault
    check_calls_answered(parsed.messages)
    check_content_parts(parsed.messages)
    take_thinking_blocks(parsed)
    check_prompt_size(parsed.messages, max_prompt_chars)
    return parsed


def take_thinking_blocks(parsed: ChatCompletionRequest) -> None:
    """An assistant message's `thinking_blocks` (LiteLLM's field, which this face answers with too) become
    its thinking, for an Anthropic model to be sent back within a tool loop; 400 when malformed."""
    for n, message in enumerate(parsed.messages):
        raw = (message.model_extra or {}).pop("thinking_blocks", None)
        if raw is None:
            continue
        try:
            blocks = [ThinkingBlock.model_validate(b) for b in raw] if isinstance(raw, list) else None
        except ValidationError:
            blocks = None
        if message.role != "assistant" or blocks is None or not all(b.complete() for b in blocks):
            raise InvalidRequest(
                "thinking_blocks: an assistant message's list of thinking blocks (thinking and signature, or "
                "redacted_thinking and data), as returned",
                param=f"messages.{n}.thinking_blocks",
            )
        message.thinking = blocks or None


def checked_priority(priority: str | None) -> Priority:
    """The request's `x-switchyard-priority` (400 unless one of PRIORITIES); `normal` when absent."""
    if priority is None:
        return "normal"
    for known in PRIORITIES:
        if priority == known:
            return known
    raise InvalidRequest(
        f"x-switchyard-priority must be one of {', '.join(PRIORITIES)}", param="x-switchyard-priority"
    )


def build_task(parsed: ChatCompletionRequest, principal: Principal, *, priority: str | None) -> TaskSubmitted:
    checked = checked_priority(priority)
    request = ChatRequest(
        model=parsed.model,
        messages=parsed.messages,
        max_tokens=parsed.limit(),
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stop,
        stream=parsed.stream,
        stream_start=True if parsed.stream else None,  # it reads the chunk naming the model called
        response_format=parsed.response_format,
        tools=parsed.tools,
        tool_choice=parsed.tool_choice,
        parallel_tool_calls=parsed.parallel_tool_calls,
        seed=parsed.seed,
        prompt_cache_key=parsed.prompt_cache_key,
        presence_penalty=parsed.presence_penalty,
        frequency_penalty=parsed.frequency_penalty,
        reasoning=parsed.reasoning(),
        n=parsed.n,
        logprobs=parsed.logprobs is True,
        top_logprobs=parsed.top_logprobs,
        truncation="auto" if parsed.truncation == "auto" else None,
    )
    return TaskSubmitted(
        task_id=new_id(),
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        allowed_models=key_policy.task_models(principal.key_policy),
        request=request,
        priority=checked,
        origin="http",
        submitted_at=datetime.now(UTC),
    )


async def complete(
    client: TaskClient,
    task: TaskSubmitted,
    *,
    timeout_s: float,
    observe: Observe = None,
    fail: Callable[[TaskFailed], NoReturn] = raise_for_failure,
) -> TaskCompleted:
    """The task's answer; its failure raised as the error `fail` makes of it (a face's own mapping)."""
    try:
        outcome = await client.run(task, timeout_s=timeout_s)
    except TimedOut:
        raise TaskTimeout(
            f"The task did not finish within {timeout_s:g} s; it was recorded as timed out"
        ) from None
    if observe is not None:  # before a failure is raised: what it was charged is settled
        observe(outcome)
    if isinstance(outcome, TaskFailed):
        fail(outcome)
    assert isinstance(outcome, TaskCompleted)
    return outcome


def completion_json(task: TaskSubmitted, done: TaskCompleted) -> bytes:
    return orjson.dumps(
        completion_body(
            task_id=task.task_id,
            created=int(time.time()),
            model=done.model,
            content=done.content,
            finish_reason=done.finish_reason,
            usage=done.usage,
            tool_calls=done.tool_calls,
            reasoning=thinking_text(done.thinking),
            thinking=done.thinking,
            other_choices=done.other_choices,
            logprobs=done.logprobs,
            refusal=done.refusal,
        )
    )


def _delta(chunk: Chunk, thought: list[str]) -> dict[str, Any]:
    """A streamed chunk's delta: its text, its thinking text (`reasoning_content`), or, when a thinking
    block ends, the whole block (`thinking_blocks`, LiteLLM's field: a client sends it back)."""
    if chunk.delta or chunk.logprobs:  # tokens may come without text (the end of a cut character)
        return {"content": chunk.delta or ""}
    delta: dict[str, Any] = {"reasoning_content": chunk.thinking} if chunk.thinking else {}
    if chunk.signature is not None:
        text = "".join(thought) + (chunk.thinking or "")
        delta["thinking_blocks"] = [{"type": "thinking", "thinking": text, "signature": chunk.signature}]
    elif chunk.redacted is not None:
        delta["thinking_blocks"] = [{"type": "redacted_thinking", "data": chunk.redacted}]
    return delta


# Each chunk's delta, finish reason and `logprobs` (its tokens', when the request asked for them).
Deltas = list[tuple[dict[str, Any], str | None, dict[str, Any] | None]]


def whole_deltas(
    content: str,
    tool_calls: list[ToolCall] | None,
    thinking: list[ThinkingBlock] | None,
    logprobs: list[TokenLogprob] | None = None,
) -> Deltas:
    """An answer sent whole (a cache replay, an output guardrail's answer, a cascade's, each of several):
    the role with its thinking first, if any, then its text (null beside tool calls, as OpenAI sends) with
    all its tokens' `logprobs`."""
    first: dict[str, Any] = {"role": "assistant"}
    out: Deltas = []
    reasoning = thinking_text(thinking)
    if reasoning:
        out.append(
            (
                {**first, "reasoning_content": reasoning, "thinking_blocks": thinking_json(thinking)},
                None,
                None,
            )
        )
        first = {}
    out.append(
        ({**first, "content": content or None if tool_calls else content}, None, logprobs_json(logprobs))
    )
    return out


def end_deltas(tool_calls: list[ToolCall] | None, finish_reason: str, refusal: str | None = None) -> Deltas:
    """An answer's end: its refusal, if the model refused (one `refusal` delta: clients concatenate them),
    its tool calls, sent whole in one delta once the answer is complete (OpenAI's clients accumulate
    `tool_calls` deltas by index, so one delta per call is a valid stream), then its finish reason."""
    out: Deltas = [({"refusal": refusal}, None, None)] if refusal else []
    if tool_calls:
        calls = [{"index": i, **c.model_dump(mode="json")} for i, c in enumerate(tool_calls)]
        out.append(({"tool_calls": calls}, None, None))
    out.append(({}, finish_reason, None))
    return out


def tool_call_delta(piece: ToolCallPiece) -> dict[str, Any]:
    """A streamed piece of a tool call as OpenAI streams one: by its `index`, the call's id, type and
    function name with its first piece, then only more of its arguments."""
    call: dict[str, Any] = {"index": piece.index}
    if piece.id is not None:
        call.update(id=piece.id, type="function")
    function: dict[str, Any] = {"name": piece.name} if piece.name else {}
    call["function"] = {**function, "arguments": piece.arguments}
    return {"tool_calls": [call]}


class _Calls:
    """An answer's tool calls as their pieces stream, one call at a time, as OpenAI streams them: a piece
    of another call waits while the open call's arguments are not yet whole JSON (a compatible server
    may interleave its calls by index; the OpenAI SDK's chat stream takes a call as done when the next
    begins, and parses a strict tool's arguments then), and goes with the next piece after them; pieces
    still waiting at the answer's end go then, call by call. A late piece of a call before the open one
    (whitespace after its JSON) goes as it comes."""

    def __init__(self) -> None:
        self.open: int | None = None
        self.done: set[int] = set()  # the calls that were open before the open one
        self.arguments: list[str] = []  # the open call's
        self.whole: bool | None = None  # whether they are whole JSON, once asked (until they grow)
        self.waiting: list[ToolCallPiece] = []

    def add(self, piece: ToolCallPiece) -> list[ToolCallPiece]:
        if piece.index in self.done:
            return [piece]
        if self.open is not None and piece.index != self.open:
            if not self._whole():
                self.waiting.append(piece)
                return []
            if self.waiting:
                waiting, self.waiting = self.waiting, []
                return [p for w in (*waiting, piece) for p in self.add(w)]
        if piece.index != self.open:
            if self.open is not None:
                self.done.add(self.open)
            self.open, self.arguments = piece.index, []
        if piece.arguments:
            self.arguments.append(piece.arguments)
            self.whole = None
        return [piece]

    def rest(self) -> list[ToolCallPiece]:
        waiting, self.waiting = self.waiting, []
        return sorted(waiting, key=lambda p: p.index)  # each call's in the order they came

    def _whole(self) -> bool:
        if self.whole is None:
            try:
                orjson.loads("".join(self.arguments))
                self.whole = True
            except orjson.JSONDecodeError:
                self.whole = False
        return self.whole


class Answer(NamedTuple):
    """One answer of a result (the first, or another of several: `n`)."""

    content: str
    tool_calls: list[ToolCall] | None
    thinking: list[ThinkingBlock] | None
    logprobs: list[TokenLogprob] | None
    finish_reason: str
    refusal: str | None = None


def answers_of(done: TaskCompleted) -> list[Answer]:
    """A result's answers, the first first, in the order of their index."""
    first = Answer(
        done.content, done.tool_calls, done.thinking, done.logprobs, done.finish_reason, done.refusal
    )
    others = [
        Answer(c.content, c.tool_calls, c.thinking, c.logprobs, c.finish_reason, c.refusal)
        for c in done.other_choices
    ]
    return [first, *others]


def _bodies(
    task: TaskSubmitted, created: int, model: str, index: int, deltas: Deltas
) -> list[dict[str, Any]]:
    """The chunks of one answer's `deltas`."""
    return [
        chunk_body(
            task_id=task.task_id,
            created=created,
            model=model,
            delta=piece,
            finish_reason=finish,
            index=index,
            logprobs=logprobs,
        )
        for piece, finish, logprobs in deltas
    ]


async def stream_events(
    task: TaskSubmitted,
    head: list[Chunk | TaskCompleted],
    rest: AsyncIterator[Chunk | TaskCompleted | TaskFailed],
    *,
    timeout_s: float,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE in OpenAI's format: each answer's deltas under its `index` as they come (several answers, `n`,
    interleaved), the role on each one's first, and each of several answers' tool calls and finish reason
    when its end chunk comes; at the result, what no chunk carried (an answer sent whole, a single answer's
    tool calls and finish reason), then the usage. A break after text began ends with an explicit error
    event, never [DONE]."""
    created = int(time.time())
    model = task.request.model
    asked = task.chat().logprobs
    started: set[int] = set()  # the answers whose deltas began (the first carried the role)
    ended: set[int] = set()  # the answers whose end (tool calls, finish reason) went out
    calling: dict[
        int, _Calls
    ] = {}  # the answers whose tool calls streamed in pieces (not sent again at the end)
    thoughts: dict[int, list[str]] = {}  # each answer's thinking block being streamed, for its end's delta

    def piece_body(index: int, piece: ToolCallPiece) -> dict[str, Any]:
        delta = tool_call_delta(piece)
        if index not in started:
            delta = {"role": "assistant", "content": None, **delta}
            started.add(index)
        return chunk_body(task_id=task.task_id, created=created, model=model, delta=delta, index=index)

    try:
        async for item in in_order(head, rest):
            if isinstance(item, Fault):
                yield fault_sse(item)
                return
            if isinstance(item, Chunk):
                model = item.model or model
                index = item.choice
                # one of several answers ended: its end now, the others go on (Chunk.ends_answer, inlined:
                # every chunk asks, and the call cost ~0.2 us of the ~2.4 us a chunk takes to render)
                if item.tool_call is not None:
                    streaming = calling.get(index) or calling.setdefault(index, _Calls())
                    for piece in streaming.add(item.tool_call):
                        yield sse(piece_body(index, piece))
                    continue
                if item.finish_reason is not None and not item.done:
                    for piece in calling[index].rest() if index in calling else []:
                        yield sse(piece_body(index, piece))
                    # the role first if none of its deltas went out (nothing but tool calls, or nothing)
                    unsent = [] if index in started else whole_deltas("", item.tool_calls, None)
                    calls = None if index in calling else item.tool_calls
                    end = end_deltas(calls, item.finish_reason or "stop", item.refusal)
                    for body in _bodies(task, created, model, index, unsent + end):
                        yield sse(body)
                    started.add(index)
                    ended.add(index)
                    continue
                thought = thoughts.setdefault(index, [])
                delta = _delta(item, thought)
                if item.thinking:
                    thought.append(item.thinking)
                if item.signature is not None or item.redacted is not None:
                    thought.clear()
                if delta:
                    if index not in started:
                        delta = {"role": "assistant", **delta}
                        started.add(index)
                    # a text chunk's tokens, when asked ([] for a chunk that carries none); null beside
                    # thinking
                    tokens = (item.logprobs or []) if asked and (item.delta or item.logprobs) else None
                    body = chunk_body(
                        task_id=task.task_id,
                        created=created,
                        model=model,
                        delta=delta,
                        index=index,
                        logprobs=logprobs_json(tokens),
                    )
                    yield sse(body)
                continue
            model = item.model
            # Each answer's end, unless its end chunk sent it: all its deltas when none was streamed, then
            # its tool calls and finish reason. Whether their log probabilities were cut
            # (`logprobs_truncated`) is known only here, after a streamed answer's headers went out: only
            # one sent whole says it in x-switchyard-logprobs.
            for index, a in enumerate(answers_of(item)):
                if index in ended:
                    continue
                for piece in calling[index].rest() if index in calling else []:
                    yield sse(piece_body(index, piece))
                unsent = (
                    [] if index in started else whole_deltas(a.content, a.tool_calls, a.thinking, a.logprobs)
                )
                calls = None if index in calling else a.tool_calls
                for body in _bodies(
                    task, created, model, index, unsent + end_deltas(calls, a.finish_reason, a.refusal)
                ):
                    yield sse(body)
            if include_usage:
                usage = usage_json(item.usage)
                yield sse(
                    chunk_body(
                        task_id=task.task_id,
                        created=created,
                        model=model,
                        delta={},
                        usage=usage,
                        with_choice=False,
                    )
                )
            yield b"data: [DONE]\n\n"
            return
    except TimedOut as exc:
        yield sse_error(str(exc), "task_timeout", "timeout")
    except Stopped:
        yield sse_error(Stopped.message, Stopped.code, "service_unavailable")
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
