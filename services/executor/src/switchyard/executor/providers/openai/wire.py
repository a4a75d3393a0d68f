"""OpenAI chat completions on the wire: the request body, the JSON and SSE replies, the error bodies."""

from __future__ import annotations

from typing import Any

import httpx

from switchyard.common.errors import ProviderError
from switchyard.common.events import Usage
from switchyard.executor.providers.base import ProviderCall, Reply, estimated_usage
from switchyard.executor.providers.errors import ErrorKind, kind_for_status, provider_error
from switchyard.executor.providers.http import parse_json, retry_after

_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_POLICY_CODES = {"content_filter", "content_policy_violation", "moderation_blocked"}


def request_body(call: ProviderCall, *, stream: bool, max_completion_tokens: bool) -> dict[str, Any]:
    """`max_completion_tokens` for OpenAI itself (its reasoning models refuse `max_tokens`); compatible
    servers (vLLM, Ollama, llama.cpp, Groq, Together) all read `max_tokens`."""
    body: dict[str, Any] = {
        "model": call.model,
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in call.messages],
        "stream": stream,
    }
    if call.max_tokens is not None:
        body["max_completion_tokens" if max_completion_tokens else "max_tokens"] = call.max_tokens
    if call.temperature is not None:
        body["temperature"] = call.temperature
    if call.top_p is not None:
        body["top_p"] = call.top_p
    if call.stop:
        body["stop"] = list(call.stop)
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def usage_of(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
    )


def parse_reply(raw: bytes, call: ProviderCall) -> Reply:
    data = parse_json(raw, what="the chat completion")
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise provider_error(
            "bad_response", f"chat completion without choices[0].message: {raw[:200]!r}"
        ) from exc
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise provider_error("bad_response", "choices[0].message.content is not a string")
    usage = usage_of(data.get("usage")) or estimated_usage(call, content)
    return Reply(
        content=content,
        finish_reason=choice.get("finish_reason") or "stop",
        model=str(data.get("model") or call.model),
        usage=usage,
    )


def error_from_body(status: int, raw: bytes, headers: httpx.Headers | None = None) -> ProviderError:
    """Maps an OpenAI error (`{"error": {"message", "type", "code"}}`) to the taxonomy."""
    message, err_type, code = _error_fields(raw)
    kind: ErrorKind = kind_for_status(status)
    retryable: bool | None = None
    if code in _CONTEXT_CODES or "maximum context length" in message.lower():
        kind = "context_too_long"
    elif code in _POLICY_CODES or err_type in _POLICY_CODES:
        kind = "content_policy"
    elif code == "insufficient_quota" or err_type == "insufficient_quota":
        kind, retryable = "rate_limited", False  # out of credit: waiting does not help, another provider may
    delay = retry_after(headers) if headers is not None else None
    text = f"openai {status}: {message or raw[:200].decode('utf-8', 'replace') or 'no error body'}"
    return provider_error(kind, text, retry_after=delay, retryable=retryable)


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
