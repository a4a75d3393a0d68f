"""Routing on capabilities: a task that needs tools, JSON mode (or an answer held to a schema) or vision
goes only to models that have them, the local model included."""

from __future__ import annotations

import pytest

from switchyard.common.errors import NoProviderAvailable
from switchyard.common.events import ChatMessage, ChatRequest, Classification, FunctionCall, ToolCall
from switchyard.common.policy import load_policy
from switchyard.router.chain import needs
from switchyard.router.routing import ModelLacksCapability, decide

pytestmark = pytest.mark.unit
POLICY = load_policy()
ALL = {"local", "openai", "anthropic", "gemini"}
CLS = Classification(type="qa", confidence=0.9, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def _req(**kw: object) -> ChatRequest:
    messages = kw.pop("messages", [ChatMessage(role="user", content="Weather in Paris?")])
    return ChatRequest.model_validate({"messages": messages, **kw})


def _models(request: ChatRequest, available: set[str] = ALL) -> list[str]:
    return [
        c.model
        for c in decide(request=request, classification=CLS, policy=POLICY, available=available).candidates
    ]


def test_what_a_request_needs() -> None:
    assert needs(_req()) == set()
    assert needs(_req(tools=TOOLS)) == {"tools"}
    assert needs(_req(tools=TOOLS, tool_choice="none")) == set()
    assert needs(_req(response_format={"type": "json_object"})) == {"json_mode"}
    assert needs(_req(response_format={"type": "text"})) == set()
    call = ToolCall(id="c1", function=FunctionCall(name="get_weather"))
    history = [
        ChatMessage(role="user", content="Weather?"),
        ChatMessage(role="assistant", tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id="c1", content="21C"),
    ]
    assert needs(_req(messages=history)) == {"tools"}  # a conversation with tool turns


def test_a_schema_task_may_go_to_claude_and_a_schemaless_json_task_may_not() -> None:
    """Claude 5.5 holds an answer to a JSON schema (structured outputs) but has no free JSON mode: a
    schema task may go to it, routed or named; JSON without a schema skips it, and naming it is a 400."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
    structured = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    assert needs(_req(response_format=structured)) == {"json_schema"}
    routed = _models(_req(response_format=structured))
    assert "anthropic/claude-haiku-5-5" in routed and "openai/gpt-6-luna" in routed  # JSON mode implies it
    assert _models(_req(model="anthropic/claude-sonnet-5-5", response_format=structured)) == [
        "anthropic/claude-sonnet-5-5"
    ]
    with pytest.raises(ModelLacksCapability) as lacking:
        _models(_req(model="anthropic/claude-sonnet-5-5", response_format={"type": "json_object"}))
    assert "json_mode" in str(lacking.value)


def test_a_tool_task_never_goes_to_a_model_without_tools() -> None:
    models = _models(_req(tools=TOOLS))
    assert "local/smollm2-135m-instruct" not in models
    assert all("tools" in POLICY.model(m).capabilities for m in models)  # type: ignore[union-attr]
    assert "gemini/gemini-3.1-flash-lite" in models and "anthropic/claude-haiku-5-5" in models
    # GPT-6.1 Sol's tools go through OpenAI's Responses API: a hard tool task may start there
    hard = CLS.model_copy(update={"complexity": 0.95})
    decision = decide(request=_req(tools=TOOLS), classification=hard, policy=POLICY, available=ALL)
    assert decision.tier == "premium"
    assert [c.model for c in decision.candidates][:2] == ["openai/gpt-6.1-sol", "anthropic/claude-opus-5-5"]
    plain = _models(_req())
    assert plain[-1] == "local/smollm2-135m-instruct"


def test_a_json_task_skips_models_without_json_mode_and_keeps_the_local_grammar() -> None:
    models = _models(_req(response_format={"type": "json_object"}))
    assert not any(m.startswith("anthropic/") for m in models)
    assert models[-1] == "local/smollm2-135m-instruct"
    decision = decide(
        request=_req(response_format={"type": "json_object"}),
        classification=CLS,
        policy=POLICY,
        available=ALL,
    )
    rejected = {r["model"]: r["reason"] for r in decision.reasons["rejected"]}
    assert rejected["anthropic/claude-sonnet-5-5"] == "lacks json_mode"


def test_an_image_is_not_sent_to_the_local_model() -> None:
    image = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
    ]
    models = _models(_req(messages=[ChatMessage(role="user", content=image)]))
    assert models and "local/smollm2-135m-instruct" not in models


PDF = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "a.pdf"}}


def test_a_document_goes_only_to_models_that_read_pdfs() -> None:
    """A PDF needs `pdf`: every bundled OpenAI, Anthropic and Gemini chat model has it (their providers
    document PDF input), the local model not; with only the local model the task is refused, naming what
    is missing, and naming the local model is a 400 with the reason."""
    asked = [ChatMessage(role="user", content=[{"type": "text", "text": "Summarise this."}, PDF])]
    assert needs(_req(messages=asked)) == {"pdf"}
    models = _models(_req(messages=asked))
    assert "local/smollm2-135m-instruct" not in models
    assert {m.partition("/")[0] for m in models} == {"openai", "anthropic", "gemini"}
    with pytest.raises(NoProviderAvailable) as local_only:
        _models(_req(messages=asked), {"local"})
    assert local_only.value.code == "capability_unavailable" and "pdf" in local_only.value.message
    with pytest.raises(ModelLacksCapability) as named:
        _models(_req(model="local/smollm2-135m-instruct", messages=asked))
    assert "pdf" in str(named.value)


def test_with_only_the_local_model_a_tool_task_has_no_provider_and_says_why() -> None:
    with pytest.raises(NoProviderAvailable) as caught:
        _models(_req(tools=TOOLS), {"local"})
    assert "tools" in caught.value.message


def test_a_pinned_model_without_the_capability_is_refused_with_the_reason() -> None:
    with pytest.raises(ModelLacksCapability) as caught:
        _models(_req(model="local/smollm2-135m-instruct", tools=TOOLS))
    assert caught.value.code == "model_lacks_capability" and "tools" in caught.value.message
    assert _models(_req(model="openai/gpt-6-luna", tools=TOOLS)) == ["openai/gpt-6-luna"]
    assert _models(_req(model="openai/some-new-model", tools=TOOLS)) == [
        "openai/some-new-model"
    ]  # not listed


def test_several_answers_go_to_models_that_give_them_in_one_call() -> None:
    """`n` > 1 needs `choices`: Claude (one answer per Messages call) is left out, routed or named, and
    the plan is one call: a cascade or race would judge or race one answer of several."""
    assert needs(_req(n=3)) == {"choices"} and needs(_req(n=1)) == set()
    urgent = CLS.model_copy(update={"urgency": 0.99, "complexity": 0.5})  # would race two candidates
    decision = decide(request=_req(n=3), classification=urgent, policy=POLICY, available=ALL)
    models = [c.model for c in decision.candidates]
    assert models and not any(m.startswith("anthropic/") for m in models)
    assert "local/smollm2-135m-instruct" in models
    assert decision.strategy == "single" and decision.fan_out == 1
    assert decision.reasons["features"]["answers"] == 3
    raced = decide(request=_req(n=1), classification=urgent, policy=POLICY, available=ALL)
    assert raced.strategy == "parallel"  # the same task with one answer
    with pytest.raises(ModelLacksCapability) as named:
        _models(_req(model="anthropic/claude-haiku-5-5", n=2))
    assert "choices" in str(named.value)
    with pytest.raises(ModelLacksCapability) as passed_through:  # a name the policy does not list
        _models(_req(model="anthropic/claude-next", n=2))
    assert "one answer per request" in str(passed_through.value)
    assert _models(_req(model="openai/gpt-next", n=2)) == ["openai/gpt-next"]


def test_several_answers_are_estimated_as_output_each_within_the_context_window() -> None:
    """Each answer is output paid for (the prompt once); each must fit the window beside the prompt on its
    own, not all of them together."""
    luna = "openai/gpt-6-luna"
    one = decide(request=_req(model=luna, max_tokens=1000), classification=CLS, policy=POLICY, available=ALL)
    four = decide(
        request=_req(model=luna, max_tokens=1000, n=4), classification=CLS, policy=POLICY, available=ALL
    )
    spec = POLICY.model(luna)
    assert spec is not None
    prompt = one.estimated_prompt_tokens
    assert one.estimated_cost_usd == pytest.approx(spec.cost(prompt, 1000))
    assert four.estimated_cost_usd == pytest.approx(spec.cost(prompt, 4000))
    local = POLICY.model("local/smollm2-135m-instruct")
    assert local is not None
    wide = _req(max_tokens=local.context_window // 2, n=4)  # 4 x half the window: each still fits
    assert "local/smollm2-135m-instruct" in _models(wide, {"local"})


def test_token_log_probabilities_go_to_models_that_return_them() -> None:
    """`logprobs` needs `logprobs`: neither Claude (the Messages API has none) nor the local model (llama.cpp
    would keep logits for every position) is a candidate, routed or named; a pass-through OpenAI or
    Gemini name goes as named, an Anthropic one is refused with the reason."""
    assert needs(_req(logprobs=True)) == {"logprobs"} and needs(_req(logprobs=False)) == set()
    assert needs(_req(logprobs=True, top_logprobs=3, n=2)) == {"logprobs", "choices"}
    models = _models(_req(logprobs=True, top_logprobs=5))
    assert models and not any(m.startswith(("anthropic/", "local/")) for m in models)
    assert "local/smollm2-135m-instruct" in _models(_req())  # the same task without them
    with pytest.raises(NoProviderAvailable) as local_only:
        _models(_req(logprobs=True), {"local", "anthropic"})
    assert "logprobs" in local_only.value.message
    with pytest.raises(ModelLacksCapability) as named:
        _models(_req(model="local/smollm2-135m-instruct", logprobs=True))
    assert "logprobs" in str(named.value)
    with pytest.raises(ModelLacksCapability) as passed_through:
        _models(_req(model="anthropic/claude-next", logprobs=True))
    assert "no token log probabilities" in str(passed_through.value)
    assert _models(_req(model="gemini/gemini-next", logprobs=True)) == ["gemini/gemini-next"]
    assert _models(_req(model="openai/gpt-6-luna", logprobs=True)) == ["openai/gpt-6-luna"]
