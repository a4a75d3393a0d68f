from __future__ import annotations

import pytest

from switchyard.common.errors import NoProviderAvailable
from switchyard.common.events import ChatMessage, ChatRequest, Classification
from switchyard.common.policy import Policy, load_policy
from switchyard.common.tokens import PromptCounts
from switchyard.router.routing import (
    CapabilityUnavailable,
    ContextTooLong,
    UnknownModel,
    decide,
    tier_for,
    tier_preference,
)
from tests.support import media

pytestmark = pytest.mark.unit
POLICY = load_policy()


def _cls(complexity: float) -> Classification:
    return Classification(
        type="qa", confidence=0.9, complexity=complexity, urgency=0.5, model_version="t", latency_ms=1
    )


def _req(model: str = "auto", text: str = "What is the capital of France?") -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage(role="user", content=text)])


@pytest.mark.parametrize(
    ("complexity", "tier"),
    [(0.0, "fast"), (0.29, "fast"), (0.3, "standard"), (0.5, "standard"), (0.51, "premium")],
)
def test_complexity_thresholds(complexity: float, tier: str) -> None:
    assert tier_for(complexity, POLICY) == tier


def test_preference_goes_up_then_down_then_local() -> None:
    assert tier_preference("standard") == ["standard", "premium", "coordination", "fast", "local"]
    assert tier_preference("premium") == ["premium", "standard", "coordination", "fast", "local"]


def test_with_only_the_local_provider_everything_goes_local() -> None:
    d = decide(request=_req(), classification=_cls(0.9), policy=POLICY, available={"local"})
    assert [c.model for c in d.candidates] == ["local/smollm2-135m-instruct"]
    assert d.tier == "local"
    assert d.reasons["wanted_tier"] == "premium"
    assert "no available model in premium" in d.reasons["why"]
    rejected = {r["model"] for r in d.reasons["rejected"]}
    assert "openai/gpt-6.1-sol" in rejected


def test_chain_starts_in_the_wanted_tier_and_falls_back() -> None:
    d = decide(request=_req(), classification=_cls(0.1), policy=POLICY, available={"local", "openai"})
    models = [c.model for c in d.candidates]
    assert models[0] == "openai/gpt-6-luna"
    assert models[-1] == "local/smollm2-135m-instruct"
    assert d.candidates[0].estimated_cost_usd > 0


def test_pinned_pass_through_model() -> None:
    d = decide(
        request=_req("openai/llama3.2:1b"),
        classification=_cls(0.5),
        policy=POLICY,
        available={"openai", "local"},
    )
    assert [(c.provider, c.upstream_model) for c in d.candidates] == [("openai", "llama3.2:1b")]
    assert d.candidates[0].reasoning  # a model the client named gets its reasoning settings, as asked


def test_candidates_say_whether_they_take_reasoning_from_the_policys_capability() -> None:
    d = decide(
        request=_req(), classification=_cls(0.9), policy=POLICY, available={"openai", "anthropic", "local"}
    )
    taking = {c.model: c.reasoning for c in d.candidates}
    assert (
        taking["openai/gpt-6.1-sol"] and taking["anthropic/claude-sonnet-5-5"] and taking["openai/gpt-6-luna"]
    )
    assert not taking["local/smollm2-135m-instruct"]  # the one bundled model without `reasoning`


def test_pinned_model_of_an_unavailable_provider() -> None:
    with pytest.raises(UnknownModel):
        decide(request=_req("openai/gpt-x"), classification=_cls(0.5), policy=POLICY, available={"local"})
    with pytest.raises(NoProviderAvailable):
        decide(request=_req("openai/gpt-6-sol"), classification=_cls(0.5), policy=POLICY, available={"local"})


def test_no_provider_at_all() -> None:
    with pytest.raises(NoProviderAvailable):
        decide(request=_req(), classification=_cls(0.5), policy=POLICY, available=set())


def test_prompt_beyond_every_context_window_is_rejected() -> None:
    with pytest.raises(ContextTooLong) as caught:
        decide(request=_req(text="x" * 20_000), classification=_cls(0.1), policy=POLICY, available={"local"})
    assert caught.value.code == "context_length_exceeded" and not caught.value.retryable
    assert "local/smollm2-135m-instruct, takes 2048 tokens" in caught.value.message
    assert isinstance(caught.value, NoProviderAvailable)  # still "nothing can serve it", for the router
    # a bigger model available: routed there
    d = decide(
        request=_req(text="x" * 20_000),
        classification=_cls(0.1),
        policy=POLICY,
        available={"local", "openai"},
    )
    assert d.candidates[0].provider == "openai"


def test_a_named_models_window_too_small_for_the_prompt_is_refused_before_any_call() -> None:
    """It reached the provider before (llama.cpp refused a 9,000-token prompt for its 2,048). `max_tokens`
    is left to the provider, which clamps or refuses it its own way."""
    local = "local/smollm2-135m-instruct"
    with pytest.raises(ContextTooLong) as caught:
        decide(
            request=_req(local, "x" * 20_000), classification=_cls(0.1), policy=POLICY, available={"local"}
        )
    assert caught.value.code == "context_length_exceeded" and isinstance(caught.value, NoProviderAvailable)
    assert f"exceeds the context window of the model {local} (2048 tokens)" in caught.value.message
    asked = ChatRequest(
        model=local, messages=[ChatMessage(role="user", content="x" * 7_000)], max_tokens=4000
    )
    assert decide(request=asked, classification=_cls(0.1), policy=POLICY, available={"local"}).candidates


def test_no_provider_available_says_why_each_available_model_was_left_out() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    request = ChatRequest(
        model="auto", messages=[ChatMessage(role="user", content="x" * 20_000)], tools=tools
    )
    big = ChatRequest(model="auto", messages=[ChatMessage(role="user", content="hi")], tools=tools)
    with pytest.raises(NoProviderAvailable) as caught:
        decide(request=big, classification=_cls(0.1), policy=POLICY, available={"local"})
    assert not isinstance(caught.value, ContextTooLong)
    # no available model has tools: the client's to change (a 400), not a provider to wait for (503)
    assert isinstance(caught.value, CapabilityUnavailable) and caught.value.code == "capability_unavailable"
    assert "(it needs tools): local/smollm2-135m-instruct: lacks tools" in caught.value.message
    assert "providers not available: anthropic, gemini, openai" in caught.value.message
    # one available model too small, the other without tools: a shorter prompt alone would not do
    small = [
        m.model_copy(update={"context_window": 60}) if m.provider == "openai" else m for m in POLICY.models
    ]
    policy = POLICY.model_copy(update={"models": small})
    short = ChatRequest(model="auto", messages=[ChatMessage(role="user", content="x" * 400)], tools=tools)
    with pytest.raises(NoProviderAvailable) as caught:
        decide(request=short, classification=_cls(0.1), policy=policy, available={"local", "openai"})
    assert caught.value.code == "capability_unavailable"  # neither reason passes with time
    assert "local/smollm2-135m-instruct: lacks tools" in caught.value.message
    assert "openai/gpt-6-luna: prompt exceeds the context window (60 tokens)" in caught.value.message
    # the models with tools refused for the budget's headroom: that can change, so still a 503
    with pytest.raises(NoProviderAvailable) as caught:
        decide(
            request=big,
            classification=_cls(0.1),
            policy=POLICY,
            available={"local", "openai"},
            headroom_usd=0.0,
        )
    assert (
        caught.value.code == "no_provider_available" and "exceeds the budget headroom" in caught.value.message
    )
    with pytest.raises(ContextTooLong):  # and with a prompt no available model holds
        decide(request=request, classification=_cls(0.1), policy=policy, available={"openai"})
    # a model without tools is refused for that, whatever its window: a shorter prompt alone would not do
    with pytest.raises(CapabilityUnavailable) as caught:
        decide(request=request, classification=_cls(0.1), policy=policy, available={"local", "openai"})
    assert "local/smollm2-135m-instruct: lacks tools" in caught.value.message
    with pytest.raises(NoProviderAvailable) as caught:
        decide(request=_req(), classification=_cls(0.5), policy=POLICY, available=set())
    assert caught.value.code == "no_provider_available"
    assert caught.value.message.endswith("providers not available: anthropic, gemini, local, openai")


def test_an_alias_is_routed_as_the_model_or_auto_it_stands_for() -> None:
    """A name a client's code sends ("gpt-4o-mini") routes as its target: a named model (pinned), `auto`
    (classified and routed), or, for a tenant the target is not allowed to, the same 404 as naming it."""
    aliases = {"gpt-4o-mini": "openai/gpt-6-luna", "smart": "auto", "big": "openai/gpt-6.1-sol"}
    tenants = {"capped": {"max_tier": "fast"}}
    policy = Policy.model_validate({**POLICY.model_dump(), "aliases": aliases, "tenants": tenants})
    every = {"local", "openai", "anthropic", "gemini"}
    pinned = decide(request=_req("gpt-4o-mini"), classification=_cls(0.9), policy=policy, available=every)
    assert [c.model for c in pinned.candidates] == ["openai/gpt-6-luna"]
    assert pinned.reasons["alias"] == "gpt-4o-mini" and pinned.reasons["pinned"] == "openai/gpt-6-luna"
    routed = decide(request=_req("smart"), classification=_cls(0.9), policy=policy, available=every)
    assert routed.reasons["alias"] == "smart" and routed.tier == "premium"  # as `auto` routes it
    with pytest.raises(UnknownModel) as denied:
        decide(
            request=_req("big"), classification=_cls(0.1), policy=policy, available=every, tenant_id="capped"
        )
    assert "not available to this tenant" in denied.value.message
    plain = decide(
        request=_req("openai/gpt-6-luna"), classification=_cls(0.1), policy=policy, available=every
    )
    assert "alias" not in plain.reasons


def test_a_prompts_images_count_against_the_context_window() -> None:
    """Five 1000x1000 screenshots are ~6,700 tokens (Anthropic's rule, the most any provider's counts):
    a 4,000-token window cannot hold them, whatever the prompt's few words. Before, the router's count
    took images as 0 tokens and sent them to that model, which failed at the provider."""
    screenshot = {
        "type": "image_url",
        "image_url": {"url": media.data_url("image/png", media.png(1000, 1000))},
    }
    parts = [{"type": "text", "text": "What changed between these?"}, *[screenshot] * 5]
    request = ChatRequest(model="auto", messages=[ChatMessage(role="user", content=parts)])
    tokens = PromptCounts().count(request, tenant_id="acme")
    assert tokens > 5 * 1334
    small = [
        m.model_copy(update={"context_window": 4000}) if m.id == "openai/gpt-6-luna" else m
        for m in POLICY.models
    ]
    policy = POLICY.model_copy(update={"models": small})
    d = decide(
        request=request, classification=_cls(0.1), policy=policy, available={"openai"}, prompt_tokens=tokens
    )
    assert d.candidates[0].model != "openai/gpt-6-luna"
    assert "openai/gpt-6-luna" not in [c.model for c in d.candidates]
    with pytest.raises(ContextTooLong):
        decide(
            request=request.model_copy(update={"model": "openai/gpt-6-luna"}),
            classification=_cls(0.1),
            policy=policy,
            available={"openai"},
            prompt_tokens=tokens,
        )
