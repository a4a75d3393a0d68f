"""Router decision v2: strategies, type chains, budgets, tenants, live health, and replayable reasons."""

from __future__ import annotations

import pytest

from switchyard.common.errors import NoProviderAvailable
from switchyard.common.events import ChatMessage, ChatRequest, Classification
from switchyard.common.policy import Policy, load_policy
from switchyard.router.health import ModelSignal
from switchyard.router.routing import UnknownModel, decide

pytestmark = pytest.mark.unit
POLICY = load_policy()
ALL = {"openai", "anthropic", "local"}


def cls(
    complexity: float = 0.5, task_type: str = "qa", confidence: float = 0.9, urgency: float = 0.5
) -> Classification:
    return Classification(
        type=task_type,
        confidence=confidence,
        complexity=complexity,
        urgency=urgency,
        model_version="t",
        latency_ms=1,
    )


def req(text: str = "Explain how a heat pump works.", **extra: object) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)], **extra)  # type: ignore[arg-type]


def models(d: object) -> list[str]:
    return [c.model for c in d.candidates]  # type: ignore[attr-defined]


def test_a_standard_task_cascades_from_a_cheap_model_to_the_standard_chain() -> None:
    d = decide(request=req(), classification=cls(0.5), policy=POLICY, available=ALL)
    assert d.strategy == "cascade"
    assert models(d)[0] == "openai/gpt-6-luna"
    assert models(d)[1] == "openai/gpt-6-sol"
    assert d.checks and d.min_confidence == POLICY.strategies.cascade.min_confidence
    cheap, strong = d.candidates[0].estimated_cost_usd, d.candidates[1].estimated_cost_usd
    assert d.estimated_cost_usd == pytest.approx(cheap + 0.3 * strong, rel=1e-6)


def test_low_classifier_confidence_skips_the_cheap_step() -> None:
    d = decide(request=req(), classification=cls(0.5, confidence=0.2), policy=POLICY, available=ALL)
    assert d.strategy == "single" and models(d)[0] == "openai/gpt-6-sol"
    assert "confidence" in d.reasons["strategy_why"]


def test_an_urgent_task_races_two_candidates() -> None:
    d = decide(request=req(), classification=cls(0.5, urgency=0.95), policy=POLICY, available=ALL)
    assert d.strategy == "parallel" and d.fan_out == 2 and d.parallel_mode == "race"
    assert d.estimated_cost_usd == pytest.approx(sum(c.estimated_cost_usd for c in d.candidates[:2]))


def test_a_streamed_task_is_never_raced_or_cascaded() -> None:
    d = decide(request=req(stream=True), classification=cls(0.5, urgency=0.95), policy=POLICY, available=ALL)
    assert d.strategy == "single"


def test_the_type_chain_puts_the_code_model_first() -> None:
    d = decide(request=req(), classification=cls(0.5, "coding", confidence=0.2), policy=POLICY, available=ALL)
    assert models(d)[:2] == ["anthropic/claude-sonnet-5-5", "openai/gpt-6-sol"]


def test_an_easy_task_takes_the_cost_sensitive_entry_of_its_chain() -> None:
    d = decide(request=req(), classification=cls(0.1, "writing"), policy=POLICY, available=ALL)
    assert models(d)[0] == "anthropic/claude-haiku-5-5"


def test_a_coordination_task_goes_to_the_coordination_tier() -> None:
    d = decide(request=req(), classification=cls(0.5, "coordination"), policy=POLICY, available=ALL)
    assert d.tier == "coordination" and models(d)[0] == "openai/gpt-6.1-terra"


def test_a_hard_task_goes_premium() -> None:
    d = decide(request=req(), classification=cls(0.95), policy=POLICY, available=ALL)
    assert d.strategy == "single" and d.tier == "premium"


@pytest.mark.parametrize(
    ("headroom", "state"), [(None, "unlimited"), (50.0, "ok"), (0.5, "low"), (0.0, "exhausted")]
)
def test_budget_headroom_downgrades(headroom: float | None, state: str) -> None:
    d = decide(request=req(), classification=cls(0.95), policy=POLICY, available=ALL, headroom_usd=headroom)
    assert d.reasons["budget"]["state"] == state
    if state in ("unlimited", "ok"):
        assert d.tier == "premium"
    elif state == "low":
        assert d.tier == "fast" and all(c.tier in ("fast", "local") for c in d.candidates)
    else:
        assert models(d) == ["local/smollm2-135m-instruct"]


def test_an_estimate_above_the_headroom_is_rejected_with_the_reason() -> None:
    d = decide(request=req(), classification=cls(0.5), policy=POLICY, available=ALL, headroom_usd=0.0004)
    reasons = {r["model"]: r["reason"] for r in d.reasons["rejected"]}
    assert (
        "exceeds the budget headroom" in reasons["openai/gpt-6-sol"]
        or "budget low" in reasons["openai/gpt-6-sol"]
    )


def test_an_unhealthy_model_is_demoted_not_dropped() -> None:
    health = {"openai/gpt-6-sol": ModelSignal(success=0.2, samples=20, latency_ms=900.0)}
    d = decide(request=req(), classification=cls(0.95), policy=POLICY, available=ALL, health=health)
    assert models(d)[-1] == "openai/gpt-6-sol"
    score = next(s for s in d.reasons["scores"] if s["model"] == "openai/gpt-6-sol")
    assert score["demoted"].startswith("success EMA 0.20") and score["samples"] == 20


def test_an_open_breaker_and_an_empty_bucket_demote() -> None:
    health = {
        "openai/gpt-6.1-sol": ModelSignal(breaker="open"),
        "anthropic/claude-opus-5-5": ModelSignal(rate_headroom=0.01),
    }
    d = decide(request=req(), classification=cls(0.95), policy=POLICY, available=ALL, health=health)
    assert models(d)[:1] == ["openai/gpt-6-sol"]
    demoted = {s["model"]: s["demoted"] for s in d.reasons["scores"] if s["demoted"]}
    assert demoted == {
        "openai/gpt-6.1-sol": "circuit breaker open",
        "anthropic/claude-opus-5-5": "rate-limit headroom 1% < 5%",
    }


def test_few_samples_do_not_condemn_a_model() -> None:
    health = {"openai/gpt-6.1-sol": ModelSignal(success=0.0, samples=2)}
    d = decide(request=req(), classification=cls(0.95), policy=POLICY, available=ALL, health=health)
    assert models(d)[0] == "openai/gpt-6.1-sol"


def test_vision_requests_skip_models_without_vision() -> None:
    image = ChatMessage(
        role="user",
        content=[{"type": "image_url", "image_url": {"url": "data:,"}}, {"type": "text", "text": "what?"}],
    )
    d = decide(
        request=ChatRequest(messages=[image]),
        classification=cls(0.95),
        policy=POLICY,
        available={"anthropic", "openai", "local"},
    )
    rejected = {r["model"]: r["reason"] for r in d.reasons["rejected"]}
    assert rejected["local/smollm2-135m-instruct"] == "lacks vision"
    assert "local/smollm2-135m-instruct" not in models(d)


def test_tenant_overrides_cap_the_tier_and_deny_models() -> None:
    raw = POLICY.model_dump()
    raw["tenants"] = {"frugal": {"max_tier": "standard", "denied_models": ["openai/gpt-6-sol"]}}
    policy = Policy.model_validate(raw)
    d = decide(request=req(), classification=cls(0.95), policy=policy, available=ALL, tenant_id="frugal")
    assert all(c.tier not in ("premium",) for c in d.candidates) and "openai/gpt-6-sol" not in models(d)
    assert d.reasons["tenant"] == {"id": "frugal", "override": True}
    other = decide(request=req(), classification=cls(0.95), policy=policy, available=ALL, tenant_id="other")
    assert other.tier == "premium"
    # naming a denied model, or one above the tenant's tier, is no way round either: the policy lists it, so
    # it is not a pass-through name (it was sent unpriced as one)
    for named in ("openai/gpt-6-sol", "openai/gpt-6.1-sol"):
        with pytest.raises(UnknownModel, match="not available to this tenant"):
            decide(
                request=req(model=named),
                classification=cls(0.5),
                policy=policy,
                available=ALL,
                tenant_id="frugal",
            )
        allowed = decide(
            request=req(model=named), classification=cls(0.5), policy=policy, available=ALL, tenant_id="x"
        )
        assert models(allowed) == [named] and allowed.candidates[0].tier != "pinned"


def test_a_restricted_tenant_cannot_pass_an_unlisted_model_through() -> None:
    """A pass-through name has no tier and is not in the policy's lists: for a tenant whose override caps
    the tier or denies models, it would be a way round them (any upstream model, unpriced)."""
    raw = POLICY.model_dump()
    raw["tenants"] = {
        "capped": {"max_tier": "fast"},
        "denied": {"denied_models": ["anthropic/claude-opus-5-5"]},
        "free": {"thresholds": {"fast_below": 0.2}},
    }
    policy = Policy.model_validate(raw)
    for tenant in ("capped", "denied"):
        with pytest.raises(UnknownModel, match="not available to this tenant"):
            decide(
                request=req(model="anthropic/claude-opus-4-6"),
                classification=cls(0.5),
                policy=policy,
                available=ALL,
                tenant_id=tenant,
            )
    for tenant in ("free", "nobody"):
        d = decide(
            request=req(model="anthropic/claude-opus-4-6"),
            classification=cls(0.5),
            policy=policy,
            available=ALL,
            tenant_id=tenant,
        )
        assert models(d) == ["anthropic/claude-opus-4-6"] and d.tier == "pinned"


def test_a_cascade_needs_a_model_to_escalate_to() -> None:
    """A standard task whose only candidate is a cheap model runs it alone: a cascade with nothing to
    escalate to would run the quality checks for nothing and estimate the task at 0 USD."""
    d = decide(
        request=req(),
        classification=cls(0.5),
        policy=POLICY,
        available={"openai"},
        allowed_models=["auto", "openai/gpt-6-luna"],
    )
    assert models(d) == ["openai/gpt-6-luna"]
    assert d.strategy == "single" and d.checks == []
    assert d.estimated_cost_usd == d.candidates[0].estimated_cost_usd > 0


def test_nothing_available_is_a_clear_error() -> None:
    with pytest.raises(NoProviderAvailable):
        decide(request=req(), classification=cls(0.5), policy=POLICY, available=set())


def test_a_decision_replays_from_its_reasons() -> None:
    """The reasons carry every input that mattered: the same inputs give the same decision."""
    health = {"openai/gpt-6-sol": ModelSignal(success=0.3, samples=9, latency_ms=420.0)}
    first = decide(
        request=req(),
        classification=cls(0.5),
        policy=POLICY,
        available=ALL,
        tenant_id="t",
        prompt_tokens=40,
        headroom_usd=12.5,
        health=health,
    )
    r = first.reasons
    replayed_health = {
        s["model"]: ModelSignal(
            success=s["success"],
            latency_ms=s["latency_ms"],
            samples=s["samples"],
            breaker=s["breaker"],
            rate_headroom=s["rate_headroom"],
        )
        for s in r["scores"]
        if "samples" in s
    }
    f = r["features"]
    again = decide(
        request=req(),
        classification=cls(f["complexity"], f["type"], f["confidence"], f["urgency"]),
        policy=POLICY,
        available=ALL,
        tenant_id=r["tenant"]["id"],
        prompt_tokens=f["prompt_tokens"],
        headroom_usd=r["budget"]["headroom_usd"],
        health=replayed_health,
    )
    assert again == first and r["policy_fingerprint"] == POLICY.fingerprint()


def test_the_adaptive_threshold_sends_the_hardest_share_to_premium() -> None:
    from switchyard.router.adaptive import RollingQuantile

    recent = RollingQuantile(window=100)
    for n in range(100):
        recent.add(n / 100)  # 0.00 .. 0.99
    assert recent.threshold(0.3, min_samples=100) == 0.69  # 0.70 .. 0.99 lie above: 30 of 100
    assert recent.threshold(0.3, min_samples=101) is None  # not warmed up
    recent.add(1.0)  # the window slides: 0.00 leaves
    assert len(recent) == 100 and recent.upper(0.3) == 0.70

    def adaptive(th: object) -> float | None:
        return recent.threshold(0.3, min_samples=100)

    d = decide(
        request=req(), classification=cls(0.72), policy=POLICY, available=ALL, adaptive_premium=adaptive
    )
    assert d.tier == "premium" and d.reasons["thresholds"] == {
        "fast_below": 0.3,
        "premium_above": 0.7,
        "adaptive_share": 0.3,
    }
    static = decide(request=req(), classification=cls(0.72), policy=POLICY, available=ALL)
    assert static.reasons["thresholds"]["adaptive_share"] is None and static.tier == "premium"
    d = decide(
        request=req(), classification=cls(0.6), policy=POLICY, available=ALL, adaptive_premium=adaptive
    )
    assert (
        d.reasons["wanted_tier"] == "standard"
    )  # 0.6 is above the static 0.5 but not among the hardest 30 %


def test_the_adaptive_window_follows_a_reloaded_policy() -> None:
    """`thresholds.window` changed in the file takes effect from the next task (the router passes the
    policy in force with every value), not at the next restart."""
    from switchyard.router.adaptive import RollingQuantile

    recent = RollingQuantile(window=2000)
    for n in range(100):
        recent.add(n / 100)
    recent.add(1.0, window=50)  # the policy now looks at the last 50 tasks
    assert len(recent) == 50 and recent.upper(0.5) == 0.75  # 0.51 .. 0.99 and 1.0: 25 lie above 0.75
    for _ in range(60):
        recent.add(0.0, window=100)  # a larger window again keeps up to 100
    assert len(recent) == 100


def test_a_reloaded_policy_is_fingerprinted_as_itself() -> None:
    """The fingerprint is worked out once per policy object: a new (reloaded) policy gets its own."""
    reloaded = POLICY.model_copy(update={"version": "reloaded"})
    for policy in (POLICY, reloaded, POLICY):
        d = decide(request=req(), classification=cls(0.5), policy=policy, available=ALL)
        assert d.reasons["policy_fingerprint"] == policy.fingerprint()
    assert POLICY.fingerprint() != reloaded.fingerprint()
