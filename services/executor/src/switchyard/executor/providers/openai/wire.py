"""OpenAI chat completions on the wire: the request body, the JSON and SSE replies, the error bodies."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import httpx

from switchyard.common import documents
from switchyard.common.errors import ProviderError
from switchyard.common.events import Choice, FunctionCall, TokenLogprob, ToolCall, TopLogprob, Usage
from switchyard.executor.providers.base import (
    ProviderCall,
    Reply,
    ToolCallDelta,
    estimated_usage,
    reply_of,
    spoken,
    unsigned,
)
from switchyard.executor.providers.errors import ErrorKind, kind_for_status, provider_error
from switchyard.executor.providers.http import finite, parse_json, retry_after
from switchyard.executor.providers.openai.models import compatible_effort, effort_to_send, rules_for

# Never sent back upstream: an assistant turn's thinking blocks (Anthropic's signatures: no other provider
# takes them; `thinking_blocks` as LiteLLM names them), and the `reasoning_content` a client echoes from an
# earlier answer (the OpenAI face's, or
# DeepSeek's: OpenAI refuses unknown message fields, DeepSeek refuses this one).
# `is_error`: the Anthropic face's failed tool call, which chat completions have no field for
NOT_SENT = {"thinking", "reasoning_content", "thinking_blocks", "is_error"}
DEFAULT_FILENAME = "document.pdf"
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_POLICY_CODES = {"content_filter", "content_policy_violation", "moderation_blocked"}


def request_body(call: ProviderCall, *, stream: bool, openai_itself: bool) -> dict[str, Any]:
    """For OpenAI itself: `max_completion_tokens` (its reasoning models refuse `max_tokens`), and only what
    the routed model accepts (`models.py`). Compatible servers (vLLM, Ollama, llama.cpp, Groq, Together)
    all read `max_tokens`, and get every field the client sent."""
    rules = rules_for(call.model) if openai_itself else None
    effort = effort_to_send(call, rules) if openai_itself else compatible_effort(effort_to_send(call, None))
    # Sampling fields the model would refuse are left out without a word: the client's SDK could not know
    # which model its request was routed to, and the answer is the one asked for, less the tuning. A call
    # for logprobs goes at effort none, where they are taken, or is refused unsent (`effort_to_send`).
    sampling = rules is None or rules.takes_sampling(effort)
    body: dict[str, Any] = {
        "model": call.model,
        "messages": images_after_tool_turns(
            [
                named_files(unmarked(m.model_dump(mode="json", exclude_none=True, exclude=NOT_SENT)))
                for m in call.messages
            ]
        ),
        "stream": stream,
    }
    if call.max_tokens is not None:
        body["max_completion_tokens" if openai_itself else "max_tokens"] = call.max_tokens
    if sampling and call.temperature is not None:
        body["temperature"] = call.temperature
    if sampling and call.top_p is not None:
        body["top_p"] = call.top_p
    if call.stop:
        body["stop"] = list(call.stop)
    if call.response_format is not None:
        body["response_format"] = call.response_format
    if call.tools:
        body["tools"] = [
            {
                **t.model_dump(mode="json", exclude_none=True),
                "function": unmarked(t.function.model_dump(mode="json", exclude_none=True)),
            }
            for t in call.tools
        ]
        if call.tool_choice is not None:
            body["tool_choice"] = call.tool_choice
        if call.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = call.parallel_tool_calls
    if effort is not None:
        body["reasoning_effort"] = effort
    if call.seed is not None:
        body["seed"] = call.seed
    if openai_itself and call.cache_key is not None:  # other OpenAI-compatible servers may refuse it
        body["prompt_cache_key"] = call.cache_key
    if call.n > 1:
        body["n"] = call.n
    for name in ("presence_penalty", "frequency_penalty"):
        if sampling and getattr(call, name) is not None:
            body[name] = getattr(call, name)
    if sampling and call.logprobs:
        body["logprobs"] = True
        if call.top_logprobs is not None:
            body["top_logprobs"] = call.top_logprobs
        elif not openai_itself:
            # OpenAI's "no alternatives", said: llama.cpp's server returns no logprobs at all without it
            body["top_logprobs"] = 0
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def unmarked(item: dict[str, Any]) -> dict[str, Any]:
    """A message or function without Anthropic's `cache_control` marks (on it or its content parts), which
    the Anthropic face carries through the pipeline: OpenAI caches prompts by itself and its API, like
    the servers that copy it, refuses fields it does not know."""
    item.pop("cache_control", None)
    if isinstance(item.get("content"), list):
        item["content"] = [
            {k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p
            for p in item["content"]
        ]
    return item


def named_files(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose `file` parts (PDFs) each have a filename: OpenAI refuses `file_data` without one
    (its error names `file_id` as missing), and a client need not give one on every face."""
    content = message.get("content")
    if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "file" for p in content):
        message["content"] = [
            {"type": "file", "file": named_file(p)} if isinstance(p, dict) and p.get("type") == "file" else p
            for p in content
        ]
    return message


def named_file(part: dict[str, Any]) -> dict[str, Any]:
    """A `file` part's file, as OpenAI takes it: its data URL and its filename (`DEFAULT_FILENAME` when the
    client gave none)."""
    return {"filename": documents.filename(part) or DEFAULT_FILENAME, "file_data": documents.data_url(part)}


def images_after_tool_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat completions take only text in a `tool` message: images and PDFs a tool returned (from the
    Anthropic face's tool results, the Responses face's function call outputs) move to a user message
    right after the run of tool messages, each introduced by the call it came from; the tool message keeps
    its text."""
    out: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") != "tool" and moved:
            out.append({"role": "user", "content": moved})
            moved = []
        content = message.get("content")
        if message.get("role") == "tool" and isinstance(content, list):
            media = [p for p in content if isinstance(p, dict) and p.get("type") in ("image_url", "file")]
            if media:
                texts = [
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                ]
                message = {**message, "content": "\n".join(texts)}
                call = message.get("tool_call_id") or "a tool call"
                kind = "images" if all(p["type"] == "image_url" for p in media) else "files"
                moved += [{"type": "text", "text": f"The result of {call} came with these {kind}:"}, *media]
        out.append(message)
    if moved:
        out.append({"role": "user", "content": moved})
    return out


def tool_calls_of(data: Any) -> tuple[ToolCall, ...]:
    if not isinstance(data, list):
        return ()
    out: list[ToolCall] = []
    for item in data:
        fn = item.get("function") if isinstance(item, dict) else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise provider_error("bad_response", f"a tool call without a function name: {str(item)[:200]}")
        arguments = fn.get("arguments")
        out.append(
            ToolCall(
                id=str(item.get("id") or f"call_{len(out)}"),
                function=FunctionCall(name=str(fn["name"]), arguments=arguments or "{}"),
            )
        )
    return tuple(out)


@dataclass
class _StreamedCall:
    at: int  # its place among the answer's calls (the reply's, and its pieces' `index`)
    id: str
    given: bool  # the server gave its id
    name: str = ""
    arguments: str = ""
    told: bool = False  # its first piece (id, name) went out


class ToolCallDeltas:
    """Streamed tool calls arrive in pieces keyed by `index`: the id and name first, then the arguments.
    Each piece goes on as it comes (`add`'s ToolCallDelta), with the id the whole call will have: the
    first the server gave, else `call_<index>`. A call's first piece waits for its arguments (or the
    next call) to begin, so that it carries the whole name (a compatible server may stream the name in
    pieces, and the Anthropic and Responses faces open a call with its name); a call that streamed no
    arguments gets the `{}` its whole call has at the answer's `end`. Calls are numbered in the order
    they began, the pieces' `index` as the reply's (a server may number them from 1); a delta with a
    name and an id other than the one its index's call has is another call (Ollama numbers every
    parallel call 0, ollama#15457), any other delta of the last call of its index."""

    def __init__(self, choice: int = 0) -> None:
        self._calls: list[_StreamedCall] = []
        self._by_index: dict[int, _StreamedCall] = {}  # by the server's index, its last call
        self._choice = choice

    def add(self, deltas: Any) -> list[ToolCallDelta]:
        pieces: list[ToolCallDelta] = []
        for delta in deltas if isinstance(deltas, list) else []:
            if not isinstance(delta, dict):
                continue
            index = int(delta.get("index", 0))
            given = str(delta.get("id") or "")
            fn = delta.get("function") or {}
            call = self._by_index.get(index)
            if call is None or (given and call.given and given != call.id and fn.get("name")):
                # the calls before it are named whole by now: their first pieces go first (a client adds
                # up calls by index, and the OpenAI SDK's stream fails on an index before the one it has)
                pieces += [self._first(c, "") for c in self._calls if not c.told and c.name]
                call = _StreamedCall(len(self._calls), given or f"call_{len(self._calls)}", bool(given))
                self._calls.append(call)
                self._by_index[index] = call
            arguments = str(fn.get("arguments") or "")
            call.name += str(fn.get("name") or "")
            call.arguments += arguments
            if call.told:
                if arguments:
                    pieces.append(ToolCallDelta(call.at, arguments, choice=self._choice))
            elif call.arguments:
                pieces.append(self._first(call, call.arguments))
        return pieces

    def end(self) -> list[ToolCallDelta]:
        """The calls that streamed no arguments get `{}`, as the reply has them (whole, if not yet begun)."""
        pieces = []
        for call in self._calls:
            if call.name and not call.arguments:
                call.arguments = "{}"
                told = ToolCallDelta(call.at, "{}", choice=self._choice)
                pieces.append(told if call.told else self._first(call, "{}"))
        return pieces

    def _first(self, call: _StreamedCall, arguments: str) -> ToolCallDelta:
        call.told = True
        return ToolCallDelta(call.at, arguments, call.id, call.name or None, self._choice)

    def calls(self) -> tuple[ToolCall, ...]:
        return tool_calls_of(
            [{"id": c.id, "function": {"name": c.name, "arguments": c.arguments}} for c in self._calls]
        )


def usage_of(data: Any, *, prompt: str = "prompt", completion: str = "completion") -> Usage | None:
    """`prompt_tokens` includes the prompt-cache hits OpenAI bills at its cached-input price
    (`prompt_tokens_details.cached_tokens`, automatic for prompts from 1,024 tokens); `completion_tokens`
    the reasoning tokens (`completion_tokens_details.reasoning_tokens`), billed as output: unknown where
    a compatible server gives no such detail. The Responses API names the same counts `input_tokens` and
    `output_tokens` (`prompt="input", completion="output"`)."""
    if not isinstance(data, dict):
        return None
    prompted = int(data.get(f"{prompt}_tokens") or 0)
    completed = int(data.get(f"{completion}_tokens") or 0)
    read = _detail(data, f"{prompt}_tokens_details", "cached_tokens")
    reasoned = _detail(data, f"{completion}_tokens_details", "reasoning_tokens")
    return Usage(
        prompt_tokens=prompted,
        completion_tokens=completed,
        cache_read_tokens=min(read or 0, prompted),
        reasoning_tokens=None if reasoned is None else min(reasoned, completed),
    )


def _detail(data: dict[str, Any], details: str, name: str) -> int | None:
    """A count of a usage's details object (`prompt_tokens_details.cached_tokens`), None when not given."""
    within = data.get(details)
    value = within.get(name) if isinstance(within, dict) else None
    return int(value) if value is not None else None


def parse_reply(raw: bytes, call: ProviderCall) -> Reply:
    """The first choice as the reply; the others (a call that asked for several, `n`) as its
    `other_choices`, in the order of their `index`."""
    data = parse_json(raw, what="the chat completion")
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise provider_error("bad_response", f"chat completion without choices[0].message: {raw[:200]!r}")
    ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    answers = [_choice(c, i, logprobs=call.logprobs) for i, c in enumerate(ordered)]
    if len(answers) < call.n:
        raise provider_error("bad_response", f"{call.n} choices asked for, {len(answers)} returned")
    counted = usage_of(data.get("usage"))
    return reply_of(
        answers,
        model=str(data.get("model") or call.model),
        usage=counted or estimated_usage(call, spoken(answers)),  # the server reported none
        usage_estimated=counted is None,
    )


def _choice(choice: Any, position: int, *, logprobs: bool) -> Choice:
    """One choice of a chat completion, with the reasoning text beside it as its thinking (and its tokens'
    log probabilities when the call asked for them); a refusal (structured outputs the model will not give:
    `content` null, `refusal` its words) as its own field."""
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise provider_error("bad_response", f"chat completion without choices[{position}].message")
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise provider_error("bad_response", f"choices[{position}].message.content is not a string")
    reasoning = reasoning_of(message)
    refusal = message.get("refusal")
    return Choice(
        content=content,
        finish_reason=choice.get("finish_reason") or "stop",
        tool_calls=list(tool_calls_of(message.get("tool_calls"))) or None,
        thinking=[unsigned(reasoning)] if reasoning else None,
        logprobs=list(choice_logprobs(choice, position)) if logprobs else None,
        refusal=refusal if isinstance(refusal, str) and refusal else None,
    )


def choice_logprobs(choice: Any, position: int) -> tuple[TokenLogprob, ...]:
    """A choice's (or a stream chunk's choice's) `logprobs.content`; none for `logprobs: null` (as an
    answer of only tool calls or a refusal has, or a model that did not take the field)."""
    data = choice.get("logprobs") if isinstance(choice, dict) else None
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise provider_error("bad_response", f"choices[{position}].logprobs is not an object")
    return tokens_of(data.get("content"), f"choices[{position}].logprobs.content")


def tokens_of(entries: Any, where: str) -> tuple[TokenLogprob, ...]:
    """OpenAI's token entries (`{"token", "logprob", "bytes", "top_logprobs": [...]}`, as chat completions
    and the Responses API give them; null: none) in the pipeline's form, where `bytes` is kept only when it
    is not the token's UTF-8."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise provider_error("bad_response", f"{where} is not a list: {str(entries)[:200]}")
    # Checked here, field by field, and constructed without pydantic's validation, which would cost an
    # answer of many tokens with many alternatives milliseconds.
    out: list[TokenLogprob] = []
    for i, entry in enumerate(entries):
        token, logprob, raw = _entry(entry, f"{where}[{i}]")
        alternatives = entry.get("top_logprobs")
        if alternatives is not None and not isinstance(alternatives, list):
            raise provider_error("bad_response", f"{where}[{i}].top_logprobs is not a list")
        top = [
            TopLogprob.model_construct(token=t, logprob=lp, bytes=b)
            for t, lp, b in (
                _entry(a, f"{where}[{i}].top_logprobs[{j}]") for j, a in enumerate(alternatives or ())
            )
        ]
        out.append(TokenLogprob.model_construct(token=token, logprob=logprob, bytes=raw, top_logprobs=top))
    return tuple(out)


def _entry(entry: Any, where: str) -> tuple[str, float, list[int] | None]:
    """An entry's token, its finite log probability, and its bytes where they are not its UTF-8."""
    if not isinstance(entry, dict):
        raise provider_error("bad_response", f"{where} is not an object: {str(entry)[:200]}")
    token, logprob, raw = entry.get("token"), entry.get("logprob"), entry.get("bytes")
    if not isinstance(token, str):
        raise provider_error("bad_response", f"{where} has no token: {str(entry)[:200]}")
    if not finite(logprob):
        raise provider_error("bad_response", f"{where} has no finite logprob: {str(entry)[:200]}")
    if raw is None:
        return token, float(logprob), None
    if not isinstance(raw, list) or not all(type(b) is int and 0 <= b <= 255 for b in raw):
        raise provider_error("bad_response", f"{where} has bytes that are not bytes: {str(entry)[:200]}")
    return token, float(logprob), None if raw == list(token.encode()) else raw


def reasoning_of(message: Any) -> str:
    """The reasoning text an OpenAI-compatible server returns beside the answer: `reasoning_content`
    (DeepSeek, vLLM) or `reasoning` (OpenRouter, Ollama, newer vLLM); OpenAI itself returns none."""
    if not isinstance(message, dict):
        return ""
    for field in ("reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def error_from_body(status: int, raw: bytes, headers: httpx.Headers | None = None) -> ProviderError:
    """Maps an OpenAI error (`{"error": {"message", "type", "code"}}`) to the taxonomy."""
    message, err_type, code = _error_fields(raw)
    kind: ErrorKind = kind_for_status(status)
    if code in _CONTEXT_CODES or "maximum context length" in message.lower():
        kind = "context_too_long"
    elif code in _POLICY_CODES or err_type in _POLICY_CODES:
        kind = "content_policy"
    elif code == "insufficient_quota" or err_type == "insufficient_quota":
        kind = "quota_exhausted"  # a 429, but out of credit: waiting does not help, another provider may
    delay = retry_after(headers) if headers is not None else None
    if delay is None and kind == "rate_limited" and headers is not None:
        delay = ratelimit_reset(headers)
    text = f"openai {status}: {message or raw[:200].decode('utf-8', 'replace') or 'no error body'}"
    return provider_error(kind, text, retry_after=delay)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def ratelimit_reset(headers: httpx.Headers) -> float | None:
    """A 429's wait from OpenAI's rate-limit headers, for one without `Retry-After`: when the limit it hit
    is full again (`x-ratelimit-reset-requests` / `-tokens`, a duration as `12ms`, `1s`, `6m0s`; a bare
    number is seconds). The limit hit is one with nothing left (`x-ratelimit-remaining-*: 0`), else the
    tokens' (a request larger than the tokens left is refused while some are left); None when unsaid."""
    spent = [n for n in ("requests", "tokens") if _left(headers, n) == "0"]
    resets = [_duration_s(headers.get(f"x-ratelimit-reset-{n}", "")) for n in spent or ["tokens"]]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


def _left(headers: httpx.Headers, limit: str) -> str:
    return str(headers.get(f"x-ratelimit-remaining-{limit}", "")).strip()


def _duration_s(value: str) -> float | None:
    """`6m0s`, `1.5s`, `20ms`, or seconds as a number; None for anything else."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pieces = _DURATION.findall(value)
        if not pieces or "".join(n + u for n, u in pieces) != value:
            return None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in pieces)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error_fields(raw: bytes) -> tuple[str, str, str]:
    try:
        data = parse_json(raw, what="the error body")
    except ProviderError:
        return "", "", ""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        return err, "", ""
    if not isinstance(err, dict):
        return "", "", ""
    return str(err.get("message") or ""), str(err.get("type") or ""), str(err.get("code") or "")
