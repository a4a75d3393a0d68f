"""The provider port: one required method, `request`; streaming and embeddings are optional capabilities.

Adapters (`providers/<name>/`) translate a `ProviderCall` into one provider's wire protocol and back, and
raise `ProviderError` (see `errors.py`) for every failure. Wrappers (retry, breaker, fallback, recording)
implement the same port, so they compose.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import orjson

from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Choice,
    Reasoning,
    ThinkingBlock,
    TokenLogprob,
    ToolCall,
    ToolSpec,
    Usage,
)
from switchyard.common.media_tokens import media_tokens


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One call to one model. `timeout_s` bounds the whole call (for a stream: each wait for a chunk);
    `first_output_s`, a stream's, bounds the whole call until its first output (what is left of the task's
    deadline when it starts: after that the task's idle limit bounds it, `execution.py`). `short_bound`:
    its task's deadline left it less than the executor gives a call on its own (`RetryingProvider`), so a
    timeout at that bound is the task's cut, not the provider's failure (`ProviderError.cut_short`).
    `headers_s`, a stream's, bounds the wait for its response to begin (an HTTP provider's status and
    headers, which a streaming provider sends at once, before it thinks): the executor's own time for a
    call even when the task may wait longer for its first output, so a provider that does not answer at
    all is left for the next model as soon as without a long wait (applied only where it is the shorter
    bound)."""

    model: str
    messages: Sequence[ChatMessage]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] | None = None
    timeout_s: float | None = None
    first_output_s: float | None = None
    short_bound: bool = False
    headers_s: float | None = None
    # A stream's bound on its silence once output came: no text, reasoning or tool call for this long is
    # the provider's `timeout` (`recording.py`), charged to its health as any other
    idle_s: float | None = None
    # What the client asked beyond plain text, in OpenAI's terms; each adapter translates what its
    # provider supports (the router sends tool and JSON tasks only to models with those capabilities).
    response_format: dict[str, Any] | None = None
    tools: Sequence[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning: Reasoning | None = None  # left out for a model without the `reasoning` capability
    # What providers returned beside the earlier tool calls of this conversation and need back with them
    # (Gemini's thought signatures, OpenAI's encrypted reasoning), by tool call id: `Reply.carry` kept by
    # the executor (tool_state.py), looked up where an adapter says it `carries` such state
    carried: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    n: int = 1  # answers asked for: sent only to models with the `choices` capability (see `Reply`)
    # The output tokens' log probabilities, with `top_logprobs` alternatives each (None: the provider's
    # default, none): sent only to models with the `logprobs` capability (see `Reply.logprobs`).
    logprobs: bool = False
    top_logprobs: int | None = None
    # The client's `prompt_cache_key` scoped to its tenant (`cache_key_for`): sent to OpenAI itself only
    cache_key: str | None = None

    def first_wait_s(self) -> float | None:
        """The longest a stream's call may wait for its first part: the shorter of its two bounds."""
        bounds = [b for b in (self.timeout_s, self.first_output_s) if b is not None]
        return min(bounds) if bounds else None

    @classmethod
    def from_request(cls, request: ChatRequest, *, model: str, cap: int | None = None) -> ProviderCall:
        """The call for `request`; `cap`: the output a hard budget affords each answer (`TaskBudget`),
        sent as `max_tokens` when the request set none or a higher one."""
        asked = [t for t in (request.max_tokens, cap) if t is not None]
        return cls(
            model=model,
            messages=tuple(request.messages),
            max_tokens=min(asked) if asked else None,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop) if request.stop else None,
            response_format=request.response_format,
            tools=tuple(request.tools) if request.tools else None,
            tool_choice=request.tool_choice,
            parallel_tool_calls=request.parallel_tool_calls,
            seed=request.seed,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            reasoning=request.reasoning,
            n=request.n,
            logprobs=request.logprobs,
            top_logprobs=request.top_logprobs,
        )

    def json_format(self) -> str | None:
        """`json_object` or `json_schema` when JSON was asked for."""
        kind = (self.response_format or {}).get("type")
        return kind if kind in ("json_object", "json_schema") else None

    def json_schema(self) -> dict[str, Any] | None:
        if self.json_format() != "json_schema":
            return None
        schema = ((self.response_format or {}).get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer. `model` is the name the upstream answered with."""

    content: str
    finish_reason: str
    model: str
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()
    stop_sequence: str | None = None  # the stop sequence that ended it, where the provider says (Anthropic)
    thinking: tuple[ThinkingBlock, ...] = ()  # its reasoning before `content`, where the provider returns it
    carry: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # by tool call id: see `carried`
    # The second to n-th answers of a call that asked for several (`ProviderCall.n`); `usage` is the
    # whole call's. A stream sends their deltas as they come, each under its `choice`.
    other_choices: tuple[Choice, ...] = ()
    # The first answer's output tokens with their log probabilities, when the call asked (`logprobs`), in
    # order (the others': each `Choice.logprobs`); None when it did not.
    logprobs: tuple[TokenLogprob, ...] | None = None
    usage_estimated: bool = False  # the upstream reported no usage: `usage` is `estimated_usage`'s
    refusal: str | None = None  # the model's refusal instead of an answer (`content` is then empty)


def cache_key_for(tenant_id: str, key: str | None) -> str | None:
    """What the provider is sent for a task's `prompt_cache_key`: a digest of the tenant and the key, so
    two tenants' equal keys never group their requests in the provider's cache (one upstream organisation
    serves them all), and the key itself (often a user's id) does not leave. Equal keys of one tenant give
    equal digests: the grouping the client asked for holds."""
    if key is None:
        return None
    digest = hashlib.sha256(f"{tenant_id}\x00{key}".encode()).hexdigest()
    return f"sy-{digest[:32]}"


def reply_of(
    answers: Sequence[Choice],
    *,
    model: str,
    usage: Usage,
    carry: Mapping[str, Mapping[str, str]] | None = None,
    usage_estimated: bool = False,
) -> Reply:
    """A reply from the answers of one call, the first first (the others: a call that asked for several)."""
    first, *others = answers
    return Reply(
        content=first.content,
        finish_reason=first.finish_reason,
        model=model,
        usage=usage,
        tool_calls=tuple(first.tool_calls or ()),
        stop_sequence=first.stop_sequence,
        thinking=tuple(first.thinking or ()),
        carry=carry or {},
        other_choices=tuple(others),
        logprobs=None if first.logprobs is None else tuple(first.logprobs),
        usage_estimated=usage_estimated,
        refusal=first.refusal,
    )


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text; `logprobs`: its tokens with their log probabilities, when the call asked; `choice`:
    which answer it is of (0, the first; a call for several, `n`, streams them interleaved)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Reasoning streamed before the answer: `text` of the open thinking block; `signature` ends that
    block; `redacted` is a whole redacted block's data; `choice` as a TextDelta's."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    choice: int = 0


@dataclass(frozen=True, slots=True)
class AnswerEnd:
    """One of several answers (`n` > 1) ended: its finish reason, tool calls and refusal, as the Reply will
    hold them, sent as soon as the stream says so (the other answers may go on). A single answer's end is
    the Reply alone."""

    choice: int
    finish_reason: str
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    text: ClassVar[str] = ""  # no output text of its own (as every OUTPUT part has `text`)

    @classmethod
    def of(cls, choice: int, answer: Choice) -> AnswerEnd:
        return cls(choice, answer.finish_reason, tuple(answer.tool_calls or ()), answer.refusal)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as the provider streams it: the call's `id` and function `name` with its
    first piece, then its `arguments` in pieces; `index`: which call of the answer, `choice`: which
    answer, as a TextDelta's. The Reply (or, of several answers, the AnswerEnd) still holds every call
    whole."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    choice: int = 0
    text: ClassVar[str] = ""  # no output text of its own (as every OUTPUT part has `text`)


@dataclass(frozen=True, slots=True)
class PromptCounted:
    """The provider counted the prompt as the stream began (Anthropic's `message_start` usage): not output;
    the Reply's usage is still the call's."""

    usage: Usage
    text: ClassVar[str] = ""  # no output text of its own


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """The provider said it is still at work without output (Anthropic's `ping`, sent while it generates
    a tool's input it buffers): not output, so it moves no bound; a stream cut by its idle limit while
    these came is not the provider's failure (`recording.py`)."""

    text: ClassVar[str] = ""  # no output text of its own


# A stream yields reasoning, text and tool-call deltas (and, for several answers, each one's end) and ends
# with the whole Reply (content, tool calls, finish reason, usage, thinking, the other answers). Each
# answer's reasoning comes before its text and calls, its end after them; any of them is output sent. The
# prompt's count, where the provider gives it at the start, may come before them; keep-alives anywhere.
StreamPart = TextDelta | ThinkingDelta | ToolCallDelta | AnswerEnd | PromptCounted | KeepAlive | Reply
OUTPUT = (TextDelta, ThinkingDelta, ToolCallDelta, AnswerEnd)


@runtime_checkable
class Provider(Protocol):
    async def request(self, call: ProviderCall) -> Reply: ...


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]: ...


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    """Texts to embed with one model. `dimensions`: shorter vectors than the model's own, when asked;
    `timeout_s` and `short_bound` as a `ProviderCall`'s."""

    model: str
    inputs: Sequence[str]
    dimensions: int | None = None
    timeout_s: float | None = None
    short_bound: bool = False


@dataclass(frozen=True, slots=True)
class EmbeddingReply:
    """The vectors of an `EmbeddingCall`: `count` rows of `dimensions` little-endian float32 numbers,
    row-major, row i for input i. `model` is the name the upstream answered with."""

    vectors: bytes
    count: int
    dimensions: int
    model: str
    usage: Usage = field(default_factory=Usage)
    usage_estimated: bool = False  # the upstream reported no usage: `usage` is an estimate


@runtime_checkable
class EmbeddingProvider(Protocol):
    async def embed(self, call: EmbeddingCall) -> EmbeddingReply: ...


def estimated_embedding_usage(call: EmbeddingCall) -> Usage:
    """A count for an upstream that reported none (its input tokens: embeddings have no output)."""
    return Usage(prompt_tokens=sum(estimate_tokens(text) for text in call.inputs))


@runtime_checkable
class Closeable(Protocol):
    async def aclose(self) -> None: ...


async def stream_any(provider: Provider, call: ProviderCall) -> AsyncGenerator[StreamPart, None]:
    """Streams from a provider that can, or sends a non-streaming provider's whole answer as one delta."""
    # Not `isinstance(provider, StreamingProvider)`: a runtime-checkable protocol's check costs ~10 us,
    # and every wrapper of every streamed call asks.
    stream = getattr(provider, "stream", None)
    if stream is not None:
        parts = stream(call)
        try:
            async for part in parts:
                yield part
        finally:  # closed early (a cut): the provider's stream (its HTTP response) closes now, not at GC
            await parts.aclose()
        return
    reply = await provider.request(call)
    for part in reply_parts(reply):
        yield part


def reply_parts(reply: Reply) -> list[StreamPart]:
    """A whole reply as a stream sends it: each answer's thinking blocks and text, the first answer's
    first, the others' under their `choice` (each of several followed by its end), then the reply."""
    parts = _answer_parts(0, reply.thinking, reply.content, reply.logprobs)
    if reply.other_choices:
        parts.append(AnswerEnd(0, reply.finish_reason, reply.tool_calls, reply.refusal))
    for choice, other in enumerate(reply.other_choices, start=1):
        parts += _answer_parts(choice, other.thinking or (), other.content, other.logprobs)
        parts.append(AnswerEnd.of(choice, other))
    parts.append(reply)
    return parts


def _answer_parts(
    choice: int,
    thinking: Sequence[ThinkingBlock],
    content: str,
    logprobs: Sequence[TokenLogprob] | None,
) -> list[StreamPart]:
    parts: list[StreamPart] = []
    for block in thinking:
        if block.type == "redacted_thinking":
            parts.append(ThinkingDelta(redacted=block.data or "", choice=choice))
        else:
            parts.append(
                ThinkingDelta(text=block.thinking or "", signature=block.signature or "", choice=choice)
            )
    if content:
        parts.append(TextDelta(content, tuple(logprobs or ()), choice))
    return parts


def estimate_tokens(text: str) -> int:
    """A rough count (about four characters a token) for upstreams that report no usage."""
    return max(1, len(text) // 4) if text else 0


def estimated_usage(call: ProviderCall, content: str, *, counted: Usage | None = None) -> Usage:
    """A count for an upstream that reported none; `content` is all the output, reasoning and tool calls
    included. `counted`: the prompt as the provider counted it when its stream began (`PromptCounted`),
    taken instead of the estimate."""
    if counted is not None and counted.prompt_tokens:
        return Usage(
            prompt_tokens=counted.prompt_tokens,
            completion_tokens=estimate_tokens(content),
            cache_read_tokens=counted.cache_read_tokens,
            cache_write_tokens=counted.cache_write_tokens,
        )
    return Usage(prompt_tokens=estimated_prompt(call), completion_tokens=estimate_tokens(content))


def spoken(answers: Sequence[Choice]) -> str:
    """All that `answers` said, for an estimate of their output: text, reasoning and tool calls (name and
    arguments)."""
    parts: list[str] = []
    for answer in answers:
        parts.append(answer.content)
        parts += (block.thinking or "" for block in answer.thinking or ())
        for tool_call in answer.tool_calls or ():
            parts += (tool_call.function.name, tool_call.function.arguments)
    return "".join(parts)


def estimated_prompt(call: ProviderCall) -> int:
    """The prompt's tokens, estimated: its messages' text, the tool calls in them (name and arguments), the
    tools offered (each function's JSON: a coding agent's run to tens of thousands of tokens, which its
    provider bills with every call), and the messages' images and PDFs (`media_tokens`)."""
    texts = [m.text() for m in call.messages]
    for message in call.messages:
        for tool_call in message.tool_calls or ():
            texts += (tool_call.function.name, tool_call.function.arguments)
    texts += (orjson.dumps(t.function.model_dump(exclude_none=True)).decode() for t in call.tools or ())
    return estimate_tokens("\n".join(texts)) + media_tokens(call.messages)


def unsigned(text: str) -> ThinkingBlock:
    """Reasoning with no signature: shown to clients as thinking, never sent back to a model (only an
    Anthropic model takes thinking back, and only signed by Anthropic)."""
    return ThinkingBlock(thinking=text, signature="")


class UnsignedThinking:
    """Reasoning a provider streams before its answer with no signature (an OpenAI-compatible server's
    `reasoning_content`, Gemini's thought summary): each piece as a delta, one end to its block where the
    answer's text begins or the stream ends, and the block for the reply."""

    def __init__(self, choice: int = 0) -> None:
        self._pieces: list[str] = []
        self._ended = False
        self._choice = choice  # which answer's (a call for several, `n`)

    def add(self, text: str) -> list[StreamPart]:
        if not text:
            return []
        self._pieces.append(text)
        return [ThinkingDelta(text=text, choice=self._choice)]

    def end(self) -> list[StreamPart]:
        """The block's end, once, if there was reasoning: the text begins, or the stream ends."""
        if not self._pieces or self._ended:
            return []
        self._ended = True
        return [ThinkingDelta(signature="", choice=self._choice)]

    def blocks(self) -> tuple[ThinkingBlock, ...]:
        return (unsigned("".join(self._pieces)),) if self._pieces else ()


class StreamedAnswer:
    """One answer of a stream, by its index (`choice`: a call for several, `n`, streams them interleaved):
    its text and tokens so far and its unsigned reasoning (`UnsignedThinking`), sent as deltas under its
    index."""

    def __init__(self, choice: int) -> None:
        self.choice = choice
        self.text: list[str] = []
        self.tokens: list[TokenLogprob] = []  # when the call asked for their log probabilities
        self._told = 0  # how many went out on text deltas (tokens without text go with the next text)
        self.thought = UnsignedThinking(choice)
        self.ended = False  # its AnswerEnd went out (a call for several)

    def says(self, text: str, reasoning: str, tokens: Sequence[TokenLogprob] = ()) -> list[StreamPart]:
        """The next piece: reasoning, then text (which ends the reasoning's block), as deltas. (Called for
        every streamed token: kept to what a piece holds.)"""
        parts = self.thought.add(reasoning) if reasoning else []
        if tokens:
            self.tokens += tokens
        if text:
            parts += self.thought.end()
            self.text.append(text)
            parts.append(TextDelta(text, tuple(self.tokens[self._told :]), self.choice))
            self._told = len(self.tokens)
        return parts

    def end(self) -> list[StreamPart]:
        """Its reasoning's block ends, if the text never did end it (tool calls or nothing came after);
        tokens after the last text (none of their own) go out too."""
        parts = self.thought.end()
        if len(self.tokens) > self._told:
            parts.append(TextDelta("", tuple(self.tokens[self._told :]), self.choice))
            self._told = len(self.tokens)
        return parts

    def ends(self, answer: Choice) -> list[StreamPart]:
        """Its end as soon as the stream says it ended (a call for several, `n`): what `end` sends, then
        its AnswerEnd (`answer`: the whole of it, as the Reply will hold it)."""
        self.ended = True
        return [*self.end(), AnswerEnd.of(self.choice, answer)]

    def content(self) -> str:
        return "".join(self.text)
