"""Anthropic Messages on the wire: request mapping (system prompt, roles, content parts), replies, errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from switchyard.common import documents
from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ChatMessage,
    FunctionCall,
    ThinkingBlock,
    ToolCall,
    Usage,
)
from switchyard.executor.providers.anthropic.thinking import (
    anthropics,
    bound_blocks,
    claude_thinking,
    forces_a_tool,
    thinking_for,
)
from switchyard.executor.providers.base import ProviderCall, Reply
from switchyard.executor.providers.errors import ErrorKind, kind_for_status, provider_error
from switchyard.executor.providers.http import parse_json, retry_after
from switchyard.executor.providers.tools import arguments_of, arguments_text, failed, forced_function

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_KINDS: dict[str, ErrorKind] = {
    "invalid_request_error": "bad_request",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "quota_exhausted",  # 402: the account's billing or payment
    "not_found_error": "bad_request",
    "request_too_large": "context_too_long",
    "rate_limit_error": "rate_limited",
    "api_error": "overloaded",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}


# The Messages API has no JSON mode (structured outputs take a schema, and only closed objects): the
# router sends JSON tasks to models with `json_mode`, so this is only the fallback when a client names a
# Claude model and asks for JSON without a schema, or a model before structured outputs.
JSON_INSTRUCTION = "Answer with one JSON value only: no prose, no code fence."


def request_body(call: ProviderCall, *, stream: bool, default_max_tokens: int) -> dict[str, Any]:
    model = claude_thinking(call.model)
    if call.n > 1:  # the router sends several answers only to models that give them: a policy's mistake
        raise provider_error(
            "bad_request",
            f"anthropic: the Messages API gives one answer per request, not the {call.n} asked for (`n`); "
            "not sent",
            sent=False,
        )
    if call.logprobs:  # the router sends these only to models with the `logprobs` capability
        raise provider_error(
            "bad_request",
            "anthropic: the Messages API returns no token log probabilities (`logprobs`); not sent",
            sent=False,
        )
    if call.tools and not model.forced_tools and forces_a_tool(call):
        # Refused here, before any call: the executor falls back to its next candidate as it would after
        # Anthropic's 400, and a forced tool is not quietly turned into a tool the model may skip.
        raise provider_error(
            "bad_request",
            f"anthropic: {call.model} refuses a forced tool (tool_choice any or a named tool); not sent",
            sent=False,
        )
    thinking = thinking_for(call, default_max_tokens, model)
    system, messages = split_messages(call.messages, thinking=thinking.blocks_back(model))
    output: dict[str, Any] = {}
    json_format = call.json_format()
    schema = call.json_schema() if json_format is not None else None
    if schema and model.structured and not closed(schema):
        # Anthropic holds an answer only to closed objects, and refuses the rest with a 400: the next
        # candidate (OpenAI's or Gemini's structured outputs take open objects) is asked without one.
        raise provider_error(
            "bad_request",
            f"anthropic: {call.model} holds an answer only to a schema whose objects set "
            "additionalProperties: false; not sent",
            sent=False,
        )
    if schema and model.structured:
        # Structured outputs: the answer is held to the schema, not asked for it. Anthropic takes a subset
        # of JSON Schema (objects closed with `additionalProperties: false`); one it refuses is a 400,
        # and the next candidate answers.
        output["format"] = {"type": "json_schema", "schema": schema}
    elif json_format is not None:
        hint = JSON_INSTRUCTION
        if schema:
            hint += f" It must match this JSON Schema: {arguments_text(schema)}"
        if isinstance(system, list):
            system = [*system, {"type": "text", "text": hint}]
        else:
            system = f"{system}\n\n{hint}" if system else hint
    body: dict[str, Any] = {"model": call.model, "max_tokens": thinking.max_tokens, "messages": messages}
    config = bound_blocks(thinking.config, messages) if model.preserved else thinking.config
    if config is not None:
        body["thinking"] = config
    if thinking.effort is not None:
        output["effort"] = thinking.effort
    if output:
        body["output_config"] = output
    if system:
        body["system"] = system
    if call.tools:
        body["tools"] = [
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "input_schema": t.function.parameters or {"type": "object", "properties": {}},
                **_marked(t.function.model_extra),
            }
            for t in call.tools
        ]
        choice = tool_choice(call.tool_choice, call.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    # OpenAI's temperature range is 0-2, Anthropic's 0-1. Thinking takes neither temperature nor a top_p
    # below 0.95: the model thinks at its own settings then; Claude 5 and later take none at all (left out
    # without a word: the client could not know which model its request was routed to).
    if call.temperature is not None and model.sampling and not thinking.on():
        body["temperature"] = min(call.temperature, 1.0)
    if call.top_p is not None and model.sampling and (not thinking.on() or call.top_p >= 0.95):
        body["top_p"] = call.top_p
    if call.stop:
        body["stop_sequences"] = list(call.stop)
    if stream:
        body["stream"] = True
    return body


def closed(schema: Any) -> bool:
    """Whether every object in a JSON schema is closed (`additionalProperties: false`), as Anthropic's
    structured outputs require; `$defs` and the combinators are looked into too."""
    if isinstance(schema, list):
        return all(closed(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        return False
    nested = [
        *(schema.get("properties") or {}).values(),
        *(schema.get("$defs") or schema.get("definitions") or {}).values(),
        schema.get("items"),
        *(schema.get(k) or [] for k in ("anyOf", "allOf", "oneOf")),
    ]
    return all(closed(s) for s in nested)


def tool_choice(choice: str | dict[str, Any] | None, parallel: bool | None) -> dict[str, Any] | None:
    """OpenAI's tool_choice in Anthropic's terms ("required" is "any"; a named function is "tool")."""
    name = forced_function(choice)
    out: dict[str, Any] | None
    if name is not None:
        out = {"type": "tool", "name": name}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "auto" or parallel is False:
        out = {"type": "auto"}
    else:
        out = None
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def split_messages(
    messages: Sequence[ChatMessage], *, thinking: bool = False
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """System and developer messages become the top-level `system` (a string, or text blocks when a part
    of it carries a `cache_control` breakpoint); an assistant's tool calls become `tool_use` blocks, and
    tool results `tool_result` blocks of one user turn (with `is_error` when the call failed).
    `cache_control` marks on text and image parts,
    tool results and tools are passed on: they are Anthropic's prompt-cache breakpoints. With `thinking`,
    an assistant turn's thinking blocks lead its content, as Anthropic returned them (without, they are
    left out: a call without thinking takes none). An empty assistant turn before the last message is left
    out (Anthropic refuses it; the user turns on either side of it are then one turn to Anthropic). A
    conversation of instructions only (OpenAI answers it) goes as the user's turn, with no system prompt:
    Anthropic refuses a request without messages."""
    system: list[str] = []
    marked: list[dict[str, Any]] = []  # the same as text blocks, sent as such when a part is marked
    out: list[dict[str, Any]] = []
    for n, message in enumerate(messages):
        if message.role in ("system", "developer"):
            system.append(message.text())
            if isinstance(message.content, list):
                marked += [p for p in _content(message) if isinstance(p, dict) and p.get("type") == "text"]
            else:
                marked.append({"type": "text", "text": message.text()})
            continue
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": _content(message) if isinstance(message.content, list) else message.text(),
                **_marked(message.model_extra),
                **failed(message),
            }
            if out and out[-1]["role"] == "user" and _is_results(out[-1]["content"]):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        role = "assistant" if message.role == "assistant" else "user"
        content = _content(message)
        if message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": content}] if isinstance(content, str) and content else []
            )
            if isinstance(content, list):
                blocks = content
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.function.name, "input": arguments_of(c)}
                for c in message.tool_calls
            ]
            content = blocks
        if thinking and anthropics(message.thinking) and role == "assistant":
            rest: list[dict[str, Any]] = (
                content
                if isinstance(content, list)
                else [{"type": "text", "text": content}]
                if content
                else []
            )
            content = [b.model_dump(exclude_none=True) for b in anthropics(message.thinking)] + rest
        if role == "assistant" and not content and n < len(messages) - 1:
            # an empty answer earlier in the conversation (one cut before any text, stored and sent
            # back): Anthropic refuses an empty turn anywhere but last, and joins the user turns around it
            continue
        out.append({"role": role, "content": content})
    cached = [b for b in marked if b["text"]] if any("cache_control" in b for b in marked) else None
    instructions = "\n\n".join(s for s in system if s)
    if not out and instructions:  # instructions only: Anthropic refuses a request without messages
        return "", [{"role": "user", "content": cached or instructions}]
    return (cached, out) if cached is not None else (instructions, out)


def _marked(extra: dict[str, Any] | None) -> dict[str, Any]:
    """A `cache_control` mark carried in a message's, part's or tool's extra fields, to send on."""
    mark = (extra or {}).get("cache_control")
    return {"cache_control": mark} if isinstance(mark, dict) else {}


def _is_results(content: Any) -> bool:
    return isinstance(content, list) and all(b.get("type") == "tool_result" for b in content)


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if not isinstance(message.content, list):
        return message.content or ""
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": str(part.get("text", "")), **_marked(part)})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            parts.append({"type": "image", "source": _image_source(url), **_marked(part)})
        elif part.get("type") == "file":
            parts.append({**_document(part), **_marked(part)})
    return parts


def _document(part: dict[str, Any]) -> dict[str, Any]:
    """A PDF as Anthropic's `document` block: its base64 source, and its filename as the title."""
    media, data = documents.media_and_data(part)
    name = documents.filename(part)
    source = {"type": "base64", "media_type": media, "data": data}
    return {"type": "document", "source": source, **({"title": name} if name else {})}


def _image_source(url: str) -> dict[str, str]:
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "base64", "media_type": media, "data": data}
    return {"type": "url", "url": url}


def usage_of(data: Any, previous: Usage | None = None) -> Usage:
    """Input tokens include cache writes and reads: all of them are prompt tokens the caller pays for,
    reads and writes at their own prices (`cache_read_tokens`, `cache_write_tokens`). A stream's
    `message_delta` may repeat them or not: what it leaves out is kept from `message_start`."""
    base = previous or Usage()
    if not isinstance(data, dict):
        return base
    prompt, read, written = base.prompt_tokens, base.cache_read_tokens, base.cache_write_tokens
    if any(k in data for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")):
        read = int(data.get("cache_read_input_tokens") or 0)
        written = int(data.get("cache_creation_input_tokens") or 0)
        prompt = int(data.get("input_tokens") or 0) + read + written
    completion = (
        int(data["output_tokens"]) if data.get("output_tokens") is not None else base.completion_tokens
    )
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, cache_read_tokens=read, cache_write_tokens=written
    )


def stop_sequence(data: Any) -> str | None:
    """The stop sequence a message (or a stream's `message_delta`) names as what ended it."""
    if not isinstance(data, dict) or data.get("stop_reason") != "stop_sequence":
        return None
    seq = data.get("stop_sequence")
    return seq if isinstance(seq, str) else None


def finish_reason(stop_reason: Any) -> str:
    return STOP_REASONS.get(str(stop_reason), "stop") if stop_reason else "stop"


def parse_reply(raw: bytes, call: ProviderCall) -> Reply:
    data = parse_json(raw, what="the message")
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise provider_error("bad_response", f"a message without a content list: {raw[:200]!r}")
    text = "".join(
        str(b.get("text", "")) for b in data["content"] if isinstance(b, dict) and b.get("type") == "text"
    )
    calls = tuple(tool_use(b) for b in data["content"] if isinstance(b, dict) and b.get("type") == "tool_use")
    return Reply(
        content=text,
        finish_reason=finish_reason(data.get("stop_reason")),
        model=str(data.get("model") or call.model),
        usage=usage_of(data.get("usage")),
        tool_calls=calls,
        stop_sequence=stop_sequence(data),
        thinking=tuple(thinking_block(b) for b in data["content"] if is_thinking(b)),
    )


def is_thinking(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking")


def thinking_block(block: dict[str, Any]) -> ThinkingBlock:
    """A `thinking` block (text and signature) or a `redacted_thinking` one (data), kept as returned:
    Anthropic checks them when they are sent back."""
    if block.get("type") == "redacted_thinking":
        if not isinstance(block.get("data"), str):
            raise provider_error("bad_response", "a redacted_thinking block without data")
        return ThinkingBlock(type="redacted_thinking", data=block["data"])
    if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
        raise provider_error("bad_response", "a thinking block without its text or signature")
    return ThinkingBlock(thinking=block["thinking"], signature=block["signature"])


def tool_use(block: dict[str, Any], *, arguments: str | None = None) -> ToolCall:
    """A `tool_use` block as a tool call; `arguments` is the streamed `partial_json`, when streamed."""
    if not block.get("id") or not block.get("name"):
        raise provider_error("bad_response", f"a tool_use block without id or name: {str(block)[:200]}")
    text = arguments if arguments else arguments_text(block.get("input"))
    return ToolCall(id=str(block["id"]), function=FunctionCall(name=str(block["name"]), arguments=text))


def error_from_body(status: int, raw: bytes, headers: httpx.Headers | None = None) -> ProviderError:
    """Maps `{"type": "error", "error": {"type": ..., "message": ...}}` to the taxonomy."""
    err_type, message = _error_fields(raw)
    kind: ErrorKind = _ERROR_KINDS.get(err_type) or kind_for_status(status)
    lowered = message.lower()
    if "prompt is too long" in lowered or "context window" in lowered:
        kind = "context_too_long"
    elif "required for long context" in lowered:
        # a 429 rate_limit_error no wait ends ("Extra usage is required for long context requests."): the
        # account may not send this model a prompt this long; another model's window may take it
        kind = "context_too_long"
    elif "content filtering" in lowered or "usage policy" in lowered:
        kind = "content_policy"
    elif "credit balance" in lowered or "specified api usage limits" in lowered:
        # 400 invalid_request_error: "Your credit balance is too low ..." / "You have reached your
        # specified API usage limits. You will regain access on <date>" (the Console's spend limit)
        kind = "quota_exhausted"
    delay = retry_after(headers) if headers is not None else None
    text = (
        f"anthropic {status} {err_type}: {message or raw[:200].decode('utf-8', 'replace') or 'no error body'}"
    )
    return provider_error(kind, text, retry_after=delay)


def _error_fields(raw: bytes) -> tuple[str, str]:
    try:
        data = parse_json(raw, what="the error body")
    except ProviderError:
        return "", ""
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return "", ""
    return str(err.get("type") or ""), str(err.get("message") or "")
