"""OpenAI's Responses API on the wire (`/v1/responses`), for the calls chat completions cannot carry:

- function tools on GPT-6 Astra and GPT-6.1 Sol, which take them only here;
- function tools with reasoning on GPT-5.4 and later and on GPT-6, whose chat completions take tools only
  at effort `none` (so an agent's tool turns ran without reasoning).

Stateless, like every other call of the pipeline: `store: false`, the whole conversation sent each time,
no `previous_response_id`. The model's reasoning before a function call comes back encrypted
(`include: ["reasoning.encrypted_content"]`); it goes to the executor under the call's id (`Reply.carry`,
REASONING) and back before that call on the conversation's next turns (`ProviderCall.carried`), as
OpenAI asks of a stateless tool loop, so the model goes on from its reasoning instead of starting over.

What this API has no field for: `stop` (a call with stop sequences is refused before it is sent, so the
next candidate answers it as asked), `seed` and the two penalties (tuning: left out, as the sampling
fields are where the model refuses them). Token log probabilities are asked at effort none, or the call is
refused unsent (`models.logprobs_effort`): `top_logprobs` and `include: ["message.output_text.logprobs"]`,
each output text part's `logprobs` coming back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from switchyard.common.events import ChatMessage, FunctionCall, TokenLogprob, ToolCall
from switchyard.common.events.tasks import ReasoningEffort
from switchyard.executor.providers.base import (
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    ToolCallDelta,
    UnsignedThinking,
    estimated_usage,
    unsigned,
)
from switchyard.executor.providers.errors import ErrorKind, provider_error
from switchyard.executor.providers.http import finish_body, parse_json, sse_events, transport_errors
from switchyard.executor.providers.openai.models import ModelRules, logprobs_effort
from switchyard.executor.providers.openai.wire import (
    images_after_tool_turns,
    named_file,
    tokens_of,
    unmarked,
    usage_of,
)

NAME = "openai"
PATH = "responses"
# `response.failed`'s error codes in the taxonomy; another code is the request's (bad_request), none the
# provider's trouble (overloaded)
_FAILED_KINDS: dict[str, ErrorKind] = {
    "server_error": "overloaded",
    "vector_store_timeout": "overloaded",
    "rate_limit_exceeded": "rate_limited",
    "context_length_exceeded": "context_too_long",
}
_MESSAGE_FIELDS = {"role", "content", "tool_call_id"}
REASONING = "openai_reasoning"  # in `carry`: the reasoning items before a function call, as JSON
INCLUDE = ["reasoning.encrypted_content"]
LOGPROBS = "message.output_text.logprobs"  # in `include`: each output text part's token log probabilities
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def uses_responses(call: ProviderCall, rules: ModelRules | None) -> bool:
    """Whether this call to OpenAI itself goes through /v1/responses: function tools on a model whose chat
    completions refuse them, or take them only without reasoning. (With stop sequences, which only chat
    completions have, the latter stay there, at effort none.)"""
    if rules is None or not call.tools:
        return False
    return rules.tools == "responses_only" or (rules.tools == "effort_none" and not call.stop)


def responses_body(call: ProviderCall, *, stream: bool, rules: ModelRules) -> dict[str, Any]:
    if call.stop:
        raise provider_error(
            "bad_request",
            f"openai: {call.model} takes function tools only through the Responses API, which has no stop "
            "sequences; not sent",
            sent=False,
        )
    if call.n > 1:
        raise provider_error(
            "bad_request",
            f"openai: {call.model} takes function tools only through the Responses API, which gives one "
            f"answer per request, not the {call.n} asked for (`n`); not sent",
            sent=False,
        )
    asked = call.reasoning.level() if call.reasoning is not None else None
    if call.logprobs:  # at effort none, or refused unsent: see `models.logprobs_effort`
        effort: ReasoningEffort | None = logprobs_effort(call.model, rules, asked, responses=True)
    else:
        effort = None if asked is None else rules.nearest(asked, responses=True)
    body: dict[str, Any] = {
        "model": call.model,
        "input": input_items(call.messages, call.carried),
        "store": False,
        "stream": stream,
        "include": list(INCLUDE),
    }
    if call.cache_key is not None:
        body["prompt_cache_key"] = call.cache_key
    if call.max_tokens is not None:
        body["max_output_tokens"] = call.max_tokens
    if effort is not None:
        body["reasoning"] = {"effort": effort}
    if rules.takes_sampling(effort):
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if call.top_p is not None:
            body["top_p"] = call.top_p
        if call.logprobs:
            body["include"].append(LOGPROBS)
            body["top_logprobs"] = call.top_logprobs or 0
    fmt = text_format(call.response_format)
    if fmt is not None:
        body["text"] = {"format": fmt}
    if call.tools:
        # Functions are strict by default here and not in chat completions, where the client's schema
        # was written for: strict only when asked (a strict schema must close every object).
        body["tools"] = [
            {
                "type": "function",
                "strict": False,
                **unmarked(t.function.model_dump(mode="json", exclude_none=True)),
            }
            for t in call.tools
        ]
        if call.tool_choice is not None:
            body["tool_choice"] = tool_choice(call.tool_choice)
        if call.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = call.parallel_tool_calls
    return body


def text_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat completions' `response_format` as the Responses API's `text.format` (the schema's fields move up
    one level: `{"type": "json_schema", "name", "schema", "strict"}`)."""
    kind = (response_format or {}).get("type")
    if kind == "json_schema":  # strict only when asked, as in chat completions
        return {"type": "json_schema", "strict": False, **((response_format or {}).get("json_schema") or {})}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """`{"type": "function", "function": {"name": X}}` becomes `{"type": "function", "name": X}`."""
    if isinstance(choice, dict) and choice.get("type") == "function" and "function" in choice:
        return {"type": "function", "name": (choice.get("function") or {}).get("name")}
    return choice


def input_items(
    messages: Any, carried: Mapping[str, Mapping[str, str]] | None = None
) -> list[dict[str, Any]]:
    """The conversation as input items: a message per turn (its text and images as `input_*` parts, an
    assistant's text as `output_text`), a `function_call` item per tool call of an assistant turn, a
    `function_call_output` per tool result. Images a tool returned follow its result in a user message,
    as for chat completions. An assistant turn whose calls came with reasoning (`carried`) starts with
    those reasoning items."""
    dumped = images_after_tool_turns(
        [
            unmarked(m.model_dump(mode="json", exclude_none=True, include=_MESSAGE_FIELDS))
            | {"tool_calls": m.tool_calls or []}
            for m in messages
        ]
    )
    items: list[dict[str, Any]] = []
    for message in dumped:
        role = message["role"]
        if role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": str(message.get("tool_call_id") or ""),
                    "output": ChatMessage(role="tool", content=message.get("content")).text(),
                }
            )
            continue
        items += _reasoning_before(message.get("tool_calls") or [], carried or {})
        content = message.get("content")
        if content:
            items.append({"role": role, "content": _parts(content, output=role == "assistant")})
        for call in message.get("tool_calls") or []:
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.function.name,
                    "arguments": call.function.arguments,
                }
            )
    return items


def _reasoning_before(calls: list[Any], carried: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """The reasoning items kept with a turn's function calls, each once, in their order."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for call in calls:
        kept = carried.get(call.id, {}).get(REASONING)
        for item in orjson.loads(kept) if kept else []:
            if isinstance(item, dict) and item.get("id") not in seen:
                seen.add(str(item.get("id")))
                out.append(item)
    return out


def _parts(content: str | list[dict[str, Any]], *, output: bool) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            text = str(part.get("text", ""))
            parts.append({"type": "output_text" if output else "input_text", "text": text})
        elif kind == "image_url" and not output:
            image = part.get("image_url")
            image = image if isinstance(image, dict) else {"url": image}
            parts.append(
                {"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail", "auto")}
            )
        elif kind == "file" and not output:
            parts.append({"type": "input_file", **named_file(part)})
        else:
            raise provider_error(
                "bad_request",
                f"openai: a content part of type {kind!r} has no form in the Responses API; not sent",
                sent=False,
            )
    return parts


def reply_of(data: Any, call: ProviderCall) -> Reply:
    """A Reply from a response object (the JSON body, or the one `response.completed` carries)."""
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        raise provider_error("bad_response", f"a response without output items: {str(data)[:200]}")
    if data.get("status") == "failed":
        raise failed(data.get("error"))
    texts: list[str] = []
    tokens: list[TokenLogprob] = []
    refusals: list[str] = []
    summaries: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[dict[str, Any]] = []  # encrypted, for the next turn
    for item in data["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
                    if call.logprobs:
                        tokens += tokens_of(part.get("logprobs"), "an output_text part's logprobs")
                elif part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif kind == "function_call":
            if not item.get("name"):
                raise provider_error("bad_response", f"a function call without a name: {str(item)[:200]}")
            calls.append(
                ToolCall(
                    id=str(item.get("call_id") or f"call_{len(calls)}"),
                    function=FunctionCall(name=str(item["name"]), arguments=item.get("arguments") or "{}"),
                )
            )
        elif kind == "reasoning":
            summaries += [str(s.get("text") or "") for s in item.get("summary") or [] if isinstance(s, dict)]
            if item.get("encrypted_content"):
                reasoning.append(
                    {
                        "type": "reasoning",
                        "id": item.get("id"),
                        "summary": item.get("summary") or [],
                        "encrypted_content": item["encrypted_content"],
                    }
                )
    content = "".join(texts)
    summary = "\n\n".join(s for s in summaries if s)
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        finish = _INCOMPLETE.get(str(reason), "length")
    else:
        finish = "tool_calls" if calls else "stop"
    counted = usage_of(data.get("usage"), prompt="input", completion="output")
    return Reply(
        content=content,
        finish_reason=finish,
        model=str(data.get("model") or call.model),
        usage=counted or estimated_usage(call, content),
        usage_estimated=counted is None,
        tool_calls=tuple(calls),
        thinking=(unsigned(summary),) if summary else (),
        carry={calls[0].id: {REASONING: orjson.dumps(reasoning).decode()}} if calls and reasoning else {},
        logprobs=tuple(tokens) if call.logprobs else None,
        refusal="".join(refusals) or None,
    )


def parse_response(raw: bytes, call: ProviderCall) -> Reply:
    return reply_of(parse_json(raw, what="the response"), call)


def failed(error: Any) -> Exception:
    """`response.failed`'s (or a stream's `error` event's) error as the taxonomy's."""
    err = error if isinstance(error, dict) else {}
    code = str(err.get("code") or "")
    message = str(err.get("message") or "no error message")
    kind = _FAILED_KINDS.get(code, "bad_request" if code else "overloaded")
    return provider_error(kind, f"openai: the response failed ({code or 'no code'}): {message}")


async def response_parts(response: httpx.Response, call: ProviderCall) -> AsyncIterator[StreamPart]:
    """The Responses API's typed events: text and reasoning-summary deltas as they come, a function call
    as its pieces (its id and name when its item is added, its arguments' deltas); the whole reply (tool
    calls, usage, finish) from `response.completed` or `response.incomplete`, and of a call what its
    pieces did not carry (`{}` for one that streamed no arguments)."""
    thought = UnsignedThinking()
    streamed: list[str] = []
    calling: dict[int, tuple[int, list[str]]] = {}  # by output index: the call's place, its arguments
    tokens: list[TokenLogprob] = []  # the streamed text's, when the call asked for them
    final: Reply | None = None
    async with transport_errors(NAME):
        events = sse_events(response)
        async for event in events:
            data = parse_json(event.data.encode(), what="a stream event")
            if not isinstance(data, dict):
                raise provider_error("bad_response", f"stream event is not an object: {event.data[:200]}")
            kind = data.get("type") or event.event
            if kind == "response.reasoning_summary_text.delta":
                for part in thought.add(str(data.get("delta") or "")):
                    yield part
            elif kind == "response.output_text.delta":
                delta = str(data.get("delta") or "")
                told = tokens_of(data.get("logprobs"), "a text delta's logprobs") if call.logprobs else ()
                tokens += told
                if delta:
                    for part in thought.end():
                        yield part
                    streamed.append(delta)
                    yield TextDelta(delta, told)
            elif kind == "response.output_item.added":
                item = data.get("item") or {}
                if isinstance(item, dict) and item.get("type") == "function_call" and item.get("name"):
                    at = len(calling)
                    calling[int(data.get("output_index") or 0)] = (at, [])
                    for part in thought.end():
                        yield part
                    yield ToolCallDelta(at, "", str(item.get("call_id") or f"call_{at}"), str(item["name"]))
            elif kind == "response.function_call_arguments.delta":
                piece = str(data.get("delta") or "")
                at, pieces = calling.get(int(data.get("output_index") or 0), (-1, []))
                if piece and at >= 0:
                    pieces.append(piece)
                    yield ToolCallDelta(at, piece)
            elif kind in ("response.completed", "response.incomplete"):
                final = reply_of(data.get("response"), call)
                break
            elif kind == "response.failed":
                raise failed((data.get("response") or {}).get("error"))
            elif kind == "error":
                raise failed(data)
        if final is None:
            raise provider_error("network", "openai: the response stream ended before it completed")
        await finish_body(events)
    for part in thought.end():
        yield part
    if not streamed and final.content:  # text only the final event carried
        yield TextDelta(final.content, final.logprobs or ())
    for at, pieces in calling.values():
        sent = "".join(pieces)
        whole = final.tool_calls[at].function.arguments if at < len(final.tool_calls) else sent
        if whole.startswith(sent) and len(whole) > len(sent):
            yield ToolCallDelta(at, whole[len(sent) :])
    # The text is what was streamed (the final event repeats it), with its tokens; the rest is the final
    # event's.
    yield Reply(
        content="".join(streamed) or final.content,
        finish_reason=final.finish_reason,
        model=final.model,
        usage=final.usage,
        usage_estimated=final.usage_estimated,
        tool_calls=final.tool_calls,
        thinking=thought.blocks() or final.thinking,
        carry=final.carry,
        logprobs=(tuple(tokens) if streamed else final.logprobs) if call.logprobs else None,
        refusal=final.refusal,
    )
