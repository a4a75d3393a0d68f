"""OpenAI's 400s the faces give before any task (`openai_rules`), at their edges: which tool calls count
as answered, which schemas and names pass."""

from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage, FunctionCall, ToolCall
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.openai_rules import check_calls_answered, check_function, check_stream_options

ASK = ChatMessage(role="user", content="weather?")


def _called(*ids: str) -> ChatMessage:
    calls = [ToolCall(id=i, function=FunctionCall(name="f", arguments="{}")) for i in ids]
    return ChatMessage(role="assistant", tool_calls=calls)


def _answer(call_id: str) -> ChatMessage:
    return ChatMessage(role="tool", tool_call_id=call_id, content="42")


@pytest.mark.parametrize(
    "messages",
    [
        [ASK, _called("a", "b"), _answer("b"), _answer("a")],  # in any order
        [ASK, _called("a"), _answer("a"), ChatMessage(role="user", content="thanks")],
    ],
)
def test_calls_answered_right_after_them_pass(messages: list[ChatMessage]) -> None:
    check_calls_answered(messages)


@pytest.mark.parametrize(
    ("messages", "missing", "at"),
    [
        ([ASK, _called("a", "b"), _answer("a")], "b", 2),  # answered in part, at the end too
        ([ASK, _called("a", "b")], "a, b", 1),  # the last message: OpenAI refuses these there too
        ([ASK, _called("a"), ASK], "a", 2),
        ([ASK, _called("a"), ChatMessage(role="assistant", content="?"), _answer("a")], "a", 2),
    ],
)
def test_calls_left_unanswered_are_refused_naming_them(
    messages: list[ChatMessage], missing: str, at: int
) -> None:
    """As OpenAI's body says it: `param` the role of the message that came where a tool message was due
    (`messages.[N].role`; the conversation's last when none came), `code` null (openai.BadRequestError
    bodies quoted in public reports: `'param': 'messages.[2].role', 'code': None`)."""
    with pytest.raises(InvalidRequest) as refused:
        check_calls_answered(messages)
    assert refused.value.param == f"messages.[{at}].role"
    assert refused.value.openai_code is None and refused.value.code == "invalid_value"  # ours, in logs
    assert refused.value.message.endswith(f"did not have response messages: {missing}")


def test_names_and_schemas() -> None:
    check_function("a" * 64, None, at="tools.0.function")
    check_function("get_weather-2", {"properties": {}}, at="tools.0.function")  # no type: an object's
    for name, code in (
        ("a" * 65, "string_above_max_length"),
        ("a.b", "invalid_value"),
        ("é", "invalid_value"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            check_function(name, None, at="tools.3")
        assert (refused.value.code, refused.value.param) == (code, "tools.3.name")
    with pytest.raises(InvalidRequest) as refused:
        check_function("f", {"type": "array"}, at="tools.0.function")
    assert refused.value.param == "tools.0.function.parameters"
    assert refused.value.code == "invalid_function_parameters"


def test_stream_options_need_a_stream() -> None:
    check_stream_options(True, {"include_usage": True})
    check_stream_options(False, None)
    with pytest.raises(InvalidRequest):
        check_stream_options(False, {"include_usage": False})
