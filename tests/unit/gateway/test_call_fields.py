"""A tool call of an earlier turn whose id or name the pipeline cannot hold (1 to 256 characters) is the
client's 400 naming where it is, on the faces that read calls out of their own shape (chat's and Gemini's
are validated with their bodies). It was a ValidationError out of the Responses and Anthropic parsers: a
500."""

from __future__ import annotations

import orjson
import pytest

from switchyard.gateway import messages, responses
from switchyard.gateway.errors import InvalidRequest

pytestmark = pytest.mark.unit
LONG = "f" * 257


def _responses(call_id: str, name: str) -> bytes:
    call = {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"}
    return orjson.dumps(
        {
            "model": "auto",
            "input": [call, {"type": "function_call_output", "call_id": call_id, "output": "1"}],
        }
    )


def _anthropic(call_id: str, name: str) -> bytes:
    use = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    result = {"type": "tool_result", "tool_use_id": call_id, "content": "1"}
    turns = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    return orjson.dumps({"model": "auto", "max_tokens": 8, "messages": turns})


@pytest.mark.parametrize(("call_id", "name"), [(LONG, "ls"), ("call_1", LONG)])
def test_a_call_id_or_name_too_long_is_a_400(call_id: str, name: str) -> None:
    faces = [
        (lambda: responses.parse_request(_responses(call_id, name), max_prompt_chars=10_000), "input.0"),
        (
            lambda: messages.parse_request(_anthropic(call_id, name), max_prompt_chars=10_000),
            "messages.1.content.0",
        ),
    ]
    for parse, param in faces:
        with pytest.raises(InvalidRequest) as refused:
            parse()
        assert (refused.value.param, refused.value.code) == (param, "string_above_max_length")
