"""What OpenAI's API refuses with a 400 beyond its fields' JSON types, refused by the OpenAI faces in its
words before any task is made. Passed on, such a request was answered by one model and refused by
another, as the router happened to pick (a local model takes a tool named `get weather`; OpenAI does not)."""

from __future__ import annotations

import re
from typing import Any

from switchyard.common.events import ChatMessage
from switchyard.gateway.errors import InvalidRequest, UnansweredToolCalls

FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]+")
MAX_FUNCTION_NAME = 64
MAX_FUNCTION_DESCRIPTION = 1024  # chat completions' `tools[].function.description`
MIN_OUTPUT_TOKENS = 16  # the Responses API's least `max_output_tokens`
MAX_LISTED = 5  # unanswered call ids a message names


def check_stream_options(stream: bool, stream_options: object) -> None:
    """`stream_options` (`include_usage`) says how a stream ends: OpenAI refuses it without `stream: true`
    (a `null` is no option)."""
    if stream_options is not None and stream is not True:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )


def _check_length(value: str, limit: int, *, param: str) -> None:
    if len(value) > limit:
        raise InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{limit}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )


def check_function(
    name: str, parameters: dict[str, Any] | None, *, at: str, description: str | None = None
) -> None:
    """A function tool's name (letters, digits, `_` and `-`, at most 64 of them) and its `parameters`, a
    JSON Schema of an object when given (one without `type` is taken as one). `at`: where the function is
    defined (`tools.0.function` on chat completions, `tools.0` on Responses). `description`: checked when
    given, at most 1,024 characters (chat completions refuses a longer one; Responses is not known to)."""
    param = f"{at}.name"
    _check_length(name, MAX_FUNCTION_NAME, param=param)
    if not FUNCTION_NAME.fullmatch(name):
        raise InvalidRequest(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches the pattern "
            "'^[a-zA-Z0-9_-]+$'.",
            param=param,
            code="invalid_value",
        )
    if description is not None:
        _check_length(description, MAX_FUNCTION_DESCRIPTION, param=f"{at}.description")
    kind = (parameters or {}).get("type", "object")
    if kind != "object":
        raise InvalidRequest(
            f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"', got "
            f"'type: \"{str(kind)[:80]}\"'.",
            param=f"{at}.parameters",
            code="invalid_function_parameters",
        )


def check_calls_answered(messages: list[ChatMessage]) -> None:
    """Each tool call of an assistant message is answered by one of the `tool` messages right after it,
    before the conversation goes on, and when it is the last message too: OpenAI refuses calls nothing
    answers wherever they are (a model asked to go on from its own calls would answer for the tools).
    Refused as OpenAI's body says it: `param` the role of the message that came where a tool message was
    due (`messages.[N].role`, OpenAI's path form; the conversation's last message when none came), `code`
    null (`UnansweredToolCalls`)."""
    for n, message in enumerate(messages):
        if message.role != "assistant" or not message.tool_calls:
            continue
        answered: set[str | None] = set()
        due = n + 1  # where the next tool message was due
        while due < len(messages) and messages[due].role == "tool":
            answered.add(messages[due].tool_call_id)
            due += 1
        missing = [call.id for call in message.tool_calls if call.id not in answered]
        if missing:
            raise UnansweredToolCalls(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                "'tool_call_id'. The following tool_call_ids did not have response messages: "
                + ", ".join(missing[:MAX_LISTED]),
                param=f"messages.[{min(due, len(messages) - 1)}].role",
            )


def check_max_output_tokens(value: int | None) -> None:
    """The Responses API's `max_output_tokens`: at least 16, as OpenAI takes it."""
    if value is not None and value < MIN_OUTPUT_TOKENS:
        raise InvalidRequest(
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {value} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )
