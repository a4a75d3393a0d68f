"""What every adapter needs to translate tool calls and tool results: OpenAI's shapes are the pipeline's
(arguments as a JSON string, results as `tool` turns naming the call's id); Anthropic and Gemini want
the arguments as objects and, for Gemini, a result named by its function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from switchyard.common.events import ChatMessage, ToolCall


def arguments_of(call: ToolCall) -> dict[str, Any]:
    """The call's arguments as an object; text that is not a JSON object is kept under `input`."""
    try:
        value = orjson.loads(call.function.arguments or "{}")
    except orjson.JSONDecodeError:
        return {"input": call.function.arguments}
    return value if isinstance(value, dict) else {"input": value}


def arguments_text(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def function_names(messages: Sequence[ChatMessage]) -> dict[str, str]:
    """Tool call id -> function name, from the assistant turns that made the calls."""
    return {c.id: c.function.name for m in messages for c in (m.tool_calls or [])}


def result_value(message: ChatMessage) -> Any:
    """A tool turn's content: parsed when it is JSON, else its text."""
    text = message.text()
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def failed(message: ChatMessage) -> dict[str, bool]:
    """`{"is_error": True}` for a tool turn the Anthropic face marked as a failed call (its tool_result's
    `is_error`, carried in the message's extra fields), else nothing."""
    return {"is_error": True} if (message.model_extra or {}).get("is_error") is True else {}


def forced_function(tool_choice: str | dict[str, Any] | None) -> str | None:
    """The function name of `{"type": "function", "function": {"name": ...}}`, else None."""
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        return str(name) if name else None
    return None
