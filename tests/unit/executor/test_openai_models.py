"""The body OpenAI's reasoning models get: the effort each accepts, sampling fields only at effort none,
function tools through chat completions where it takes them at any effort and through the Responses API
where not; other models and compatible servers unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionSpec, Reasoning, ToolSpec
from switchyard.executor.providers.base import ProviderCall
from switchyard.executor.providers.openai import wire as openai_wire
from switchyard.executor.providers.openai.models import rules_for
from switchyard.executor.providers.openai.responses import responses_body, uses_responses

pytestmark = pytest.mark.unit
WEATHER = (ToolSpec(function=FunctionSpec(name="get_weather", parameters={"type": "object"})),)
SAMPLING = {"temperature": 0.2, "top_p": 0.9, "presence_penalty": 0.5, "frequency_penalty": 0.1}
SAMPLED = tuple(SAMPLING)


def _call(model: str, effort: str | None = None, *, tools: bool = False, **kw: Any) -> ProviderCall:
    return ProviderCall(
        model=model,
        messages=(ChatMessage(role="user", content="Weather in Paris?"),),
        max_tokens=100,
        seed=7,
        reasoning=None if effort is None else Reasoning(effort=effort),
        tools=WEATHER if tools else None,
        **(SAMPLING | kw),
    )


def _body(
    model: str, effort: str | None = None, *, tools: bool = False, itself: bool = True
) -> dict[str, Any]:
    call = _call(model, effort, tools=tools)
    assert not (itself and uses_responses(call, rules_for(model)))  # a chat-completions case
    return openai_wire.request_body(call, stream=False, openai_itself=itself)


@pytest.mark.parametrize(
    ("model", "asked", "tools", "effort", "sampled"),
    [
        # o-series: low to high, never a sampling field
        ("o3", None, False, None, ()),
        ("o3", "xhigh", False, "high", ()),
        ("o3-mini", "none", False, "low", ()),
        ("o4-mini-2025-04-16", "minimal", True, "low", ()),
        ("o1", "medium", True, "medium", ()),
        # gpt-5: minimal to high, never a sampling field
        ("gpt-5", "none", False, "minimal", ()),
        ("gpt-5-mini", "max", False, "high", ()),
        ("gpt-5-nano-2025-08-07", "low", True, "low", ()),
        ("gpt-5-2025-08-07", None, False, None, ()),
        # gpt-5.1: none, no xhigh; defaults to none, so sampling goes unless an effort is asked
        ("gpt-5.1", None, False, None, SAMPLED),
        ("gpt-5.1", "minimal", False, "none", SAMPLED),
        ("gpt-5.1", "xhigh", True, "high", ()),
        ("gpt-5.1-2025-11-13", "none", True, "none", SAMPLED),
        # gpt-5.2: xhigh; tools still with any effort
        ("gpt-5.2", "max", False, "xhigh", ()),
        ("gpt-5.2", "high", True, "high", ()),
        # gpt-5.4 and later (with tools: the Responses API, below)
        ("gpt-5.4", "high", False, "high", ()),
        ("gpt-5.5", "max", False, "xhigh", ()),
        ("gpt-5.6-sol", "xhigh", False, "xhigh", ()),
        # GPT-6: none to max, default medium (so no sampling unless none is sent)
        ("gpt-6-luna", None, False, None, ()),
        ("gpt-6-luna", "max", False, "max", ()),
        ("gpt-6-sol", "none", False, "none", SAMPLED),
        # the GPT-6 models without none
        ("gpt-6-astra", "none", False, "low", ()),
        ("gpt-6.1-sol", "minimal", False, "low", ()),
        ("gpt-6.1-sol-2026-05-01", "max", False, "xhigh", ()),  # max only through the Responses API
        ("gpt-6-astra", "max", False, "max", ()),
    ],
)
def test_openai_reasoning_models_get_what_they_accept(
    model: str, asked: str | None, tools: bool, effort: str | None, sampled: tuple[str, ...]
) -> None:
    body = _body(model, asked, tools=tools)
    assert body.get("reasoning_effort") == effort
    assert tuple(f for f in SAMPLED if f in body) == sampled
    assert body["seed"] == 7 and body["max_completion_tokens"] == 100 and "max_tokens" not in body
    assert ("tools" in body) == tools


@pytest.mark.parametrize(
    ("model", "asked", "effort", "sampled"),
    [
        # chat completions take their tools only at effort none: here they go with the effort asked
        ("gpt-5.4", "high", "high", ()),
        ("gpt-5.4-mini", None, None, ("temperature", "top_p")),  # its default is none
        ("gpt-5.6-luna-2026-03-02", "medium", "medium", ()),
        ("gpt-6-luna", None, None, ()),  # its default is medium
        ("gpt-6-luna", "none", "none", ("temperature", "top_p")),
        ("gpt-6.1-terra", "high", "high", ()),
        # chat completions take no tools at all for these
        ("gpt-6-astra", "none", "low", ()),
        ("gpt-6-astra", "max", "max", ()),
        ("gpt-6.1-sol", "max", "max", ()),  # max: the Responses API's, not chat completions'
        ("gpt-6.1-sol-2026-05-01", None, None, ()),
    ],
)
def test_function_tools_go_through_the_responses_api_where_chat_completions_would_refuse_them(
    model: str, asked: str | None, effort: str | None, sampled: tuple[str, ...]
) -> None:
    call = _call(model, asked, tools=True)
    rules = rules_for(model)
    assert rules is not None and uses_responses(call, rules)
    body = responses_body(call, stream=False, rules=rules)
    assert body.get("reasoning") == (None if effort is None else {"effort": effort})
    assert tuple(f for f in SAMPLED if f in body) == sampled
    assert (body["max_output_tokens"], body["store"], body["input"]) == (
        100,
        False,
        [{"role": "user", "content": "Weather in Paris?"}],
    )
    assert body["tools"] == [  # not strict unless asked: chat completions' default, not the Responses API's
        {"type": "function", "strict": False, "name": "get_weather", "parameters": {"type": "object"}}
    ]
    assert not {"seed", "presence_penalty", "frequency_penalty", "max_tokens", "messages"} & set(body)
    # without tools, the same model stays on chat completions
    assert not uses_responses(_call(model, asked), rules)


def test_stop_sequences_cannot_go_through_the_responses_api() -> None:
    call = _call("gpt-6.1-sol", "high", tools=True, stop=("END",))
    rules = rules_for("gpt-6.1-sol")
    assert rules is not None
    with pytest.raises(ProviderError) as caught:
        responses_body(call, stream=False, rules=rules)
    assert caught.value.kind == "bad_request" and not caught.value.sent and "stop" in caught.value.message
    # a model that takes tools in chat completions at effort none goes there instead, at none
    luna = _call("gpt-6-luna", "high", tools=True, stop=("END",))
    assert not uses_responses(luna, rules_for("gpt-6-luna"))
    body = openai_wire.request_body(luna, stream=False, openai_itself=True)
    assert (body["reasoning_effort"], body["stop"], body["temperature"]) == ("none", ["END"], 0.2)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4.1-mini",
        "ft:gpt-4o-mini:acme::abc123",
        "gpt-5-chat-latest",
        "gpt-5.1-chat-latest",
        "gpt-5.1-codex",
        "gpt-5-sol",
        "omni-moderation-latest",
        "my-o3",
    ],
)
def test_other_openai_models_get_the_body_as_asked(model: str) -> None:
    assert rules_for(model) is None
    for tools in (False, True):
        body = _body(model, "xhigh", tools=tools)
        assert body["reasoning_effort"] == "xhigh"
        assert {f: body[f] for f in SAMPLED} == SAMPLING


@pytest.mark.parametrize("model", ["o3", "gpt-5", "gpt-6-luna", "gpt-6.1-sol", "qwen3"])
def test_compatible_servers_get_the_body_as_asked(model: str) -> None:
    """A local server may well serve a model under OpenAI's name; it takes its own fields, and the efforts
    it knows (OpenAI's first three: the later ones step down to high, an explicit "none" is left out)."""
    body = _body(model, "max", tools=True, itself=False)
    assert body["reasoning_effort"] == "high" and body["max_tokens"] == 100
    assert {f: body[f] for f in SAMPLED} == SAMPLING and "tools" in body
    assert _body(model, "medium", tools=True, itself=False)["reasoning_effort"] == "medium"
    assert "reasoning_effort" not in _body(model, "none", tools=True, itself=False)
