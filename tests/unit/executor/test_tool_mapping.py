"""OpenAI's tool_choice and streamed tool-call pieces in each provider's terms."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common.errors import ProviderError
from switchyard.executor.providers.anthropic import wire as anthropic_wire
from switchyard.executor.providers.gemini import wire as gemini_wire
from switchyard.executor.providers.openai.wire import ToolCallDeltas

pytestmark = pytest.mark.unit
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("choice", "parallel", "anthropic", "gemini"),
    [
        (None, None, None, None),
        ("auto", None, {"type": "auto"}, {"mode": "AUTO"}),
        ("required", None, {"type": "any"}, {"mode": "ANY"}),
        ("none", None, {"type": "none"}, {"mode": "NONE"}),
        (
            NAMED,
            None,
            {"type": "tool", "name": "get_weather"},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}, None),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, anthropic: Any, gemini: Any) -> None:
    assert anthropic_wire.tool_choice(choice, parallel) == anthropic
    assert gemini_wire.function_calling_config(choice) == gemini


def test_streamed_tool_call_pieces_are_joined_by_index() -> None:
    deltas = ToolCallDeltas()
    deltas.add([{"index": 1, "id": "call_b", "type": "function", "function": {"name": "b", "arguments": ""}}])
    deltas.add(
        [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "a", "arguments": '{"x"'}}]
    )
    deltas.add(
        [{"index": 0, "function": {"arguments": ": 1}"}}, {"index": 1, "function": {"arguments": "{}"}}]
    )
    calls = deltas.calls()  # in the order they began, as their streamed pieces are numbered
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_b", "b", "{}"),
        ("call_a", "a", '{"x": 1}'),
    ]
    broken = ToolCallDeltas()
    broken.add([{"index": 0, "id": "call_c", "function": {"arguments": "{}"}}])  # a call without a name
    with pytest.raises(ProviderError) as caught:
        broken.calls()
    assert caught.value.kind == "bad_response"
