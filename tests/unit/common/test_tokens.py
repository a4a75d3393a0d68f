from __future__ import annotations

import orjson
import pytest

from switchyard.common import tokens
from switchyard.common.events import ChatMessage, ChatRequest, FunctionCall, FunctionSpec, ToolCall, ToolSpec
from switchyard.common.tokens import PER_TOOL, PromptCounts, count_prompt, count_text, encoding

pytestmark = pytest.mark.unit


def test_cl100k_counts_offline() -> None:
    assert encoding().encode("hello world") == [15339, 1917]  # tiktoken's own cl100k_base ids
    assert count_text("") == 0
    request = ChatRequest(messages=[ChatMessage(role="user", content="hello world")])
    assert count_prompt(request) == 2 + 3 + 3


def _weather(description: str | None = None) -> ToolSpec:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return ToolSpec(function=FunctionSpec(name="get_weather", description=description, parameters=schema))


def test_tool_definitions_count_as_their_json() -> None:
    ask = [ChatMessage(role="user", content="hello world")]
    plain = count_prompt(ChatRequest(messages=ask))
    tool = _weather()
    with_tool = count_prompt(ChatRequest(messages=ask, tools=[tool]))
    spec = orjson.dumps(tool.function.model_dump(exclude_none=True)).decode()
    assert '"description"' not in spec and '"strict"' not in spec  # unset fields are not counted
    assert with_tool == plain + PER_TOOL + count_text(spec)
    # a long description is what makes an agent's tools expensive: every word of it counts
    wordy = count_prompt(ChatRequest(messages=ask, tools=[_weather(" ".join(["weather"] * 1000))]))
    assert wordy >= with_tool + 1000
    two = count_prompt(ChatRequest(messages=ask, tools=[tool, tool]))
    assert two == plain + 2 * (with_tool - plain)


def test_tool_calls_and_results_count() -> None:
    arguments = orjson.dumps({"city": "Paris, " * 200}).decode()
    call = ToolCall(id="c1", function=FunctionCall(name="get_weather", arguments=arguments))
    turns = [
        ChatMessage(role="user", content="weather in Paris?"),
        ChatMessage(role="assistant", content=None, tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id="c1", content="sunny, 21 degrees"),
    ]
    total = count_prompt(ChatRequest(messages=turns))
    texts = 3 + sum(3 + count_text(m.text()) for m in turns)
    assert total == texts + PER_TOOL + count_text("get_weather") + count_text(arguments)
    assert total > texts + 400  # the arguments, 200 times "Paris, ", are counted


async def test_a_long_message_is_counted_once_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's conversation comes again on every turn: the router counts only its new long messages,
    and the same count as count_prompt; a long prompt is counted off the event loop."""
    counted: list[int] = []

    def counting(text: str) -> int:
        counted.append(len(text))
        return count_text(text)

    history = [ChatMessage(role="tool", content="def f(x):\n    return x + 1\n" * 100)]
    request = ChatRequest(messages=[*history, ChatMessage(role="user", content="go on")])
    expected = count_prompt(request)
    monkeypatch.setattr(tokens, "count_text", counting)
    counts = PromptCounts()
    assert [counts.count(request, tenant_id="acme") for _ in range(3)] == [expected] * 3
    assert len(counted) == 1 + 3, "the long tool output once, the short turn each time"
    assert counts.count(request, tenant_id="globex") == expected
    assert len(counted) == 4 + 2, "another tenant's count is its own"
    long = ChatRequest(messages=[ChatMessage(role="user", content="word " * 30_000)])
    assert await counts.count_off_loop(long, tenant_id="acme") == count_prompt(long)
