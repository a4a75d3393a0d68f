"""A request's reasoning in each provider's terms, and the thinking blocks of earlier turns: sent back to
Anthropic as they came, never to anyone else."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionCall, Reasoning, ThinkingBlock, ToolCall
from switchyard.executor.providers.anthropic import wire as anthropic_wire
from switchyard.executor.providers.base import ProviderCall, Reply, TextDelta, ThinkingDelta, reply_parts
from switchyard.executor.providers.gemini import wire as gemini_wire
from switchyard.executor.providers.openai import wire as openai_wire

pytestmark = pytest.mark.unit

THOUGHT = ThinkingBlock(thinking="Look it up.", signature="c2lnbmVk")
REDACTED = ThinkingBlock(type="redacted_thinking", data="EmwKAhgB")
CALL = ToolCall(id="toolu_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))


def _loop(*, thinking: list[ThinkingBlock] | None) -> tuple[ChatMessage, ...]:
    """A tool loop being continued: the assistant's tool call, then its result."""
    return (
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(role="assistant", content="Checking.", tool_calls=[CALL], thinking=thinking),
        ChatMessage(role="tool", tool_call_id="toolu_1", content="18C"),
    )


def _anthropic(**kw: Any) -> dict[str, Any]:
    kw.setdefault("messages", (ChatMessage(role="user", content="Capital of France?"),))
    return anthropic_wire.request_body(ProviderCall(model="m", **kw), stream=False, default_max_tokens=4096)


def test_anthropic_gets_the_budget_and_no_sampling_settings_it_refuses_with_thinking() -> None:
    body = _anthropic(reasoning=Reasoning(budget_tokens=2048), max_tokens=8000, temperature=0.2, top_p=0.5)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048} and body["max_tokens"] == 8000
    assert "temperature" not in body and "top_p" not in body
    assert _anthropic(reasoning=Reasoning(budget_tokens=2048), max_tokens=8000, top_p=0.97)["top_p"] == 0.97
    plain = _anthropic(max_tokens=8000, temperature=0.2)
    assert "thinking" not in plain and plain["temperature"] == 0.2


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "sent_max", "budget"),
    [
        (Reasoning(effort="high"), None, 4096 + 24576, 24576),  # no limit set: the budget on top
        (Reasoning(effort="high"), 2000, 2000, 1999),  # the client's limit holds, thinking included
        (Reasoning(effort="medium"), 1000, 1000, None),  # no room for the smallest budget
        (Reasoning(effort="minimal"), None, 4096, None),
        (Reasoning(budget_tokens=1024), 1025, 1025, 1024),
    ],
)
def test_an_effort_becomes_a_budget_within_max_tokens(
    reasoning: Reasoning, max_tokens: int | None, sent_max: int, budget: int | None
) -> None:
    body = _anthropic(reasoning=reasoning, max_tokens=max_tokens)
    assert body["max_tokens"] == sent_max
    assert body.get("thinking", {}).get("budget_tokens") == budget


def test_thinking_blocks_lead_the_assistant_turn_they_came_with() -> None:
    body = _anthropic(reasoning=Reasoning(budget_tokens=1024), messages=_loop(thinking=[THOUGHT, REDACTED]))
    assert body["thinking"]["budget_tokens"] == 1024
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Look it up.", "signature": "c2lnbmVk"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    # a call without thinking sends none back
    unthinking = _anthropic(messages=_loop(thinking=[THOUGHT]))
    assert [b["type"] for b in unthinking["messages"][1]["content"]] == ["text", "tool_use"]


def test_a_tool_loop_that_began_without_thinking_goes_on_without_it() -> None:
    """Anthropic refuses thinking when the assistant turn being continued has no thinking block (it was
    answered by another model, or before the client enabled thinking): that call goes without."""
    body = _anthropic(reasoning=Reasoning(budget_tokens=1024), max_tokens=4000, messages=_loop(thinking=None))
    assert "thinking" not in body and body["max_tokens"] == 4000
    # a finished turn without thinking is no obstacle: a new user turn follows it
    later = (
        *_loop(thinking=None),
        ChatMessage(role="assistant", content="18C."),
        ChatMessage(role="user", content="And Rome?"),
    )
    assert (
        _anthropic(reasoning=Reasoning(budget_tokens=1024), messages=later)["thinking"]["budget_tokens"]
        == 1024
    )


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_tool_goes_without_thinking(choice: str | dict[str, Any]) -> None:
    body = _anthropic(reasoning=Reasoning(budget_tokens=1024), tool_choice=choice)
    assert "thinking" not in body
    assert "thinking" in _anthropic(reasoning=Reasoning(budget_tokens=1024), tool_choice="auto")


def test_openai_gets_the_effort_and_never_the_thinking_blocks() -> None:
    call = ProviderCall(
        model="o3", messages=_loop(thinking=[THOUGHT]), reasoning=Reasoning(budget_tokens=20000)
    )
    body = openai_wire.request_body(call, stream=False, openai_itself=True)
    assert body["reasoning_effort"] == "high"
    assert all("thinking" not in m for m in body["messages"])
    # an answer's reasoning_content, echoed back by a client with its message, is not sent on either
    echoed = ChatMessage.model_validate({"role": "assistant", "content": "18C.", "reasoning_content": "Hm."})
    ask = ChatMessage(role="user", content="And Rome?")
    again = openai_wire.request_body(
        ProviderCall(model="o3", messages=(echoed, ask)), stream=False, openai_itself=True
    )
    assert again["messages"][0] == {"role": "assistant", "content": "18C."}
    plain = openai_wire.request_body(
        ProviderCall(model="o3", messages=_loop(thinking=None)), stream=False, openai_itself=True
    )
    assert "reasoning_effort" not in plain


def test_gemini_gets_a_thinking_budget_within_its_range() -> None:
    call = ProviderCall(
        model="gemini-2.5-flash", messages=_loop(thinking=[THOUGHT]), reasoning=Reasoning(budget_tokens=31999)
    )
    body = gemini_wire.request_body(call)
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    assert "Look it up." not in str(body)
    low = ProviderCall(
        model="gemini-2.5-flash", messages=_loop(thinking=None), reasoning=Reasoning(effort="low")
    )
    config = gemini_wire.request_body(low)["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingBudget": 1024, "includeThoughts": True}


def test_a_whole_reply_streams_its_thinking_first() -> None:
    reply = Reply(content="18C.", finish_reason="stop", model="m", thinking=(THOUGHT, REDACTED))
    assert reply_parts(reply) == [
        ThinkingDelta(text="Look it up.", signature="c2lnbmVk"),
        ThinkingDelta(redacted="EmwKAhgB"),
        TextDelta("18C."),
        reply,
    ]


def test_anthropic_replies_keep_their_thinking_blocks_and_refuse_broken_ones() -> None:
    raw = (
        b'{"model": "m", "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 9},'
        b' "content": ['
        b'{"type": "thinking", "thinking": "Look it up.", "signature": "c2lnbmVk"},'
        b'{"type": "redacted_thinking", "data": "EmwKAhgB"}, {"type": "text", "text": "18C."}]}'
    )
    reply = anthropic_wire.parse_reply(raw, ProviderCall(model="m", messages=()))
    assert reply.thinking == (THOUGHT, REDACTED) and reply.content == "18C."
    broken = b'{"model": "m", "content": [{"type": "thinking", "thinking": "no signature"}]}'
    with pytest.raises(ProviderError, match="signature") as caught:
        anthropic_wire.parse_reply(broken, ProviderCall(model="m", messages=()))
    assert caught.value.kind == "bad_response"


def test_reasoning_another_provider_returned_is_never_sent_to_anthropic() -> None:
    """Unsigned thinking (an OpenAI-compatible server's reasoning) is shown to clients, not sent back: a
    loop whose turn holds only such goes on without thinking, as one without any does."""
    unsigned = ThinkingBlock(thinking="Hm.", signature="")
    body = _anthropic(reasoning=Reasoning(budget_tokens=1024), messages=_loop(thinking=[unsigned]))
    assert "thinking" not in body
    assert [b["type"] for b in body["messages"][1]["content"]] == ["text", "tool_use"]
    mixed = _anthropic(reasoning=Reasoning(budget_tokens=1024), messages=_loop(thinking=[unsigned, THOUGHT]))
    assert mixed["thinking"]["budget_tokens"] == 1024
    assert [b["type"] for b in mixed["messages"][1]["content"]] == ["thinking", "text", "tool_use"]
