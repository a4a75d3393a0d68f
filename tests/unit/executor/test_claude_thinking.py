"""Which thinking each Claude model is sent: adaptive thinking at an effort for Claude 4.6 and later (Opus
4.7 and later refuse a budget), a budget for the models before, efforts above `high` stepped down to one
the model takes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ChatMessage,
    FunctionCall,
    FunctionSpec,
    Reasoning,
    ThinkingBlock,
    ToolCall,
    ToolSpec,
)
from switchyard.executor.providers.anthropic import wire
from switchyard.executor.providers.anthropic.thinking import ClaudeThinking, claude_thinking
from switchyard.executor.providers.base import ProviderCall

pytestmark = pytest.mark.unit

ASK = (ChatMessage(role="user", content="Prove there are infinitely many primes."),)
CALL = ToolCall(id="toolu_1", function=FunctionCall(name="get_weather", arguments="{}"))
CLAUDE_4_5 = ClaudeThinking(structured=True)
CLAUDE_5 = ClaudeThinking(
    adaptive=True, xhigh=True, max=True, sampling=False, default_on=True, structured=True
)
CLAUDE_5_5 = replace(CLAUDE_5, forced_tools=False, preserved=True)
WEATHER = ToolSpec(function=FunctionSpec(name="get_weather", parameters={"type": "object"}))


def _body(model: str, reasoning: Reasoning | None, **kw: Any) -> dict[str, Any]:
    kw.setdefault("messages", ASK)
    call = ProviderCall(model=model, reasoning=reasoning, **kw)
    return wire.request_body(call, stream=False, default_max_tokens=4096)


@pytest.mark.parametrize(
    ("model", "takes"),
    [
        ("claude-haiku-4-5", CLAUDE_4_5),
        ("claude-haiku-4-5-20251001", CLAUDE_4_5),  # a snapshot's date is not a minor version
        ("claude-sonnet-4-5-20250929", CLAUDE_4_5),
        ("claude-opus-4-20250514", ClaudeThinking()),
        ("claude-3-7-sonnet-20250219", ClaudeThinking()),  # the old naming: before adaptive thinking
        ("claude-sonnet-4-6", replace(CLAUDE_4_5, adaptive=True)),
        ("claude-opus-4-6", replace(CLAUDE_4_5, adaptive=True, max=True)),
        ("claude-opus-4-7", replace(CLAUDE_4_5, adaptive=True, xhigh=True, max=True)),
        ("claude-sonnet-5", replace(CLAUDE_5, off={"type": "disabled"})),
        ("claude-sonnet-5-5", replace(CLAUDE_5_5, off={"type": "between_tools"})),
        ("claude-haiku-5-5", CLAUDE_5_5),
        ("claude-opus-5-5", CLAUDE_5_5),
        ("claude-fable-5-1", CLAUDE_5_5),
        ("claude-mythos-preview", CLAUDE_5),
        ("us.anthropic.claude-opus-4-6-v1", replace(CLAUDE_4_5, adaptive=True, max=True)),  # Bedrock's
        ("claude-sonnet-4-6@20260217", replace(CLAUDE_4_5, adaptive=True)),  # Vertex's
        ("my-proxy-model", ClaudeThinking()),
    ],
)
def test_what_each_model_takes_is_read_from_its_name(model: str, takes: ClaudeThinking) -> None:
    assert claude_thinking(model) == takes


def test_a_model_that_takes_adaptive_thinking_gets_it_for_a_budget_too() -> None:
    """Opus 4.7 refuses a budget with a 400; the budget becomes the effort nearest it."""
    body = _body("claude-opus-4-7", Reasoning(budget_tokens=20000), max_tokens=30000, temperature=0.2)
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": "high"}
    assert body["max_tokens"] == 30000 and "temperature" not in body


def test_adaptive_thinking_without_an_effort_leaves_the_models_default() -> None:
    body = _body("claude-opus-4-6", Reasoning(adaptive=True, display="omitted"), max_tokens=8000)
    assert body["thinking"] == {"type": "adaptive", "display": "omitted"}
    assert "output_config" not in body


@pytest.mark.parametrize(
    ("model", "effort", "sent"),
    [
        ("claude-opus-4-7", "xhigh", "xhigh"),
        ("claude-opus-4-6", "xhigh", "high"),
        ("claude-opus-4-6", "max", "max"),
        ("claude-sonnet-4-6", "max", "high"),
        ("claude-sonnet-4-6", "low", "low"),
    ],
)
def test_efforts_step_down_to_one_the_model_takes(model: str, effort: Any, sent: str) -> None:
    body = _body(model, Reasoning(adaptive=True, effort=effort), max_tokens=8000)
    assert body["output_config"] == {"effort": sent}


def test_a_model_before_adaptive_thinking_gets_the_efforts_budget() -> None:
    body = _body("claude-haiku-4-5", Reasoning(adaptive=True, effort="medium"))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 4096 + 8192  # no max_tokens asked: the budget on top of the default
    assert "output_config" not in body


def test_no_thinking_asked_out_loud_sends_none() -> None:
    body = _body("claude-opus-4-7", Reasoning(effort="none"), temperature=0.2)
    assert "thinking" not in body and "output_config" not in body and body["temperature"] == 0.2


def test_adaptive_thinking_goes_on_in_a_tool_loop_begun_without_it() -> None:
    """A budget would be refused there (the turn has no thinking block); adaptive thinking may itself
    leave a turn without thinking, so the model keeps it. A forced tool still goes without."""
    loop = (
        *ASK,
        ChatMessage(role="assistant", tool_calls=[CALL]),
        ChatMessage(role="tool", tool_call_id="toolu_1", content="18C"),
    )
    adaptive = _body("claude-opus-4-7", Reasoning(effort="high"), messages=loop)
    assert adaptive["thinking"] == {"type": "adaptive"}
    budget = _body("claude-haiku-4-5", Reasoning(effort="high"), messages=loop)
    assert "thinking" not in budget
    forced = _body("claude-opus-4-7", Reasoning(effort="high"), tool_choice="required", messages=loop)
    assert "thinking" not in forced and "output_config" not in forced


def test_earlier_thinking_blocks_go_back_with_adaptive_thinking() -> None:
    thought = ThinkingBlock(thinking="", signature="c2ln")  # a block whose thinking was omitted
    loop = (
        *ASK,
        ChatMessage(role="assistant", tool_calls=[CALL], thinking=[thought]),
        ChatMessage(role="tool", tool_call_id="toolu_1", content="18C"),
    )
    body = _body("claude-sonnet-4-6", Reasoning(adaptive=True), messages=loop)
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "", "signature": "c2ln"}


def test_claude_5_5_gets_no_sampling_settings_and_no_forced_tool() -> None:
    """Claude 5.5 always thinks and refuses `temperature`, `top_p` and a forced tool with a 400: the
    sampling settings are left out, and a forced tool fails the candidate before any call."""
    body = _body("claude-sonnet-5-5", None, temperature=0.2, top_p=0.99)
    assert "temperature" not in body and "top_p" not in body
    assert _body("claude-sonnet-4-6", None, temperature=0.2)["temperature"] == 0.2
    with pytest.raises(ProviderError) as refused:
        _body("claude-opus-5-5", None, tools=(WEATHER,), tool_choice="required")
    assert refused.value.kind == "bad_request" and "forced tool" in refused.value.message
    chosen = _body("claude-opus-5-5", None, tools=(WEATHER,), tool_choice="auto")
    assert chosen["tool_choice"] == {"type": "auto"}
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert (
        _body("claude-opus-4-7", None, tools=(WEATHER,), tool_choice=named)["tool_choice"]["type"] == "tool"
    )


@pytest.mark.parametrize(
    ("model", "off"),
    [
        ("claude-haiku-4-5", None),  # thinks only when asked
        ("claude-sonnet-5", {"type": "disabled"}),
        ("claude-sonnet-5-5", {"type": "between_tools"}),  # refuses `disabled`: its lowest setting
        ("claude-opus-5-5", None),  # always thinks: nothing turns it off, it is asked for its least
    ],
)
def test_no_thinking_is_said_the_way_each_model_takes_it(model: str, off: dict[str, str] | None) -> None:
    body = _body(model, Reasoning(effort="none"))
    assert body.get("thinking") == off
    least = {"effort": "low"} if model == "claude-opus-5-5" else None
    assert body.get("output_config") == least
    assert "thinking" not in _body(model, None)  # nothing asked: the model's own default


def test_a_model_that_thinks_by_default_gets_its_blocks_back_unasked() -> None:
    """Sonnet 5.5 thinks with no `thinking` field: a tool loop continued without a word about thinking
    still sends the turn's blocks back (a model that did not think by default would drop them)."""
    thought = ThinkingBlock(thinking="", signature="c2ln")
    loop = (
        *ASK,
        ChatMessage(role="assistant", tool_calls=[CALL], thinking=[thought]),
        ChatMessage(role="tool", tool_call_id="toolu_1", content="18C"),
    )
    body = _body("claude-sonnet-5-5", None, messages=loop)
    assert body["messages"][1]["content"][0]["type"] == "thinking"
    # its blocks are bound to the model that made them: one from another model is dropped, not a 400
    drop = {"prefix_mismatch_behavior": "drop_block"}
    assert body["thinking"] == {"type": "adaptive", "block_binding": drop}  # adaptive is its default
    assert "thinking" not in _body("claude-sonnet-5-5", None)  # no blocks sent back: nothing to say
    asked = _body("claude-opus-5-5", Reasoning(adaptive=True, effort="low"), messages=loop)
    assert asked["thinking"] == {"type": "adaptive", "block_binding": drop}
    assert _body("claude-opus-4-7", Reasoning(adaptive=True), messages=loop)["thinking"] == {
        "type": "adaptive"
    }
    older = _body("claude-haiku-4-5", None, messages=loop)
    assert older["messages"][1]["content"][0]["type"] == "tool_use"
    disabled = _body("claude-sonnet-5", Reasoning(effort="none"), messages=loop)
    assert (
        disabled["thinking"] == {"type": "disabled"}
        and disabled["messages"][1]["content"][0]["type"] == "tool_use"
    )


def test_a_json_schema_is_held_by_structured_outputs_where_the_model_takes_them() -> None:
    """Claude 4.5 and later take the schema as `output_config.format`: the answer is held to it, not
    asked for it. Earlier models, unknown names, and JSON without a schema get the instruction."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    body = _body("claude-haiku-5-5", Reasoning(adaptive=True, effort="low"), response_format=fmt)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}, "effort": "low"}
    assert "system" not in body
    older = _body("claude-3-7-sonnet-20250219", None, response_format=fmt)
    assert "output_config" not in older and "JSON Schema" in older["system"]
    plain = _body("claude-haiku-5-5", None, response_format={"type": "json_object"})
    assert "output_config" not in plain and plain["system"].startswith("Answer with one JSON value")


def test_an_open_schema_is_refused_before_the_call() -> None:
    """Anthropic holds an answer only to closed objects and refuses the rest with a 400; the candidate
    fails before any call and the next one (OpenAI's and Gemini's structured outputs take it) answers."""
    open_inside = {
        "type": "object",
        "properties": {"trip": {"type": "object", "properties": {"city": {"type": "string"}}}},
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": open_inside}}
    with pytest.raises(ProviderError) as refused:
        _body("claude-sonnet-5-5", None, response_format=fmt)
    assert refused.value.kind == "bad_request" and not refused.value.sent
    older = _body("claude-3-7-sonnet-20250219", None, response_format=fmt)  # an instruction there
    assert "JSON Schema" in older["system"]
