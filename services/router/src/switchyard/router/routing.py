"""Routing decisions: which tier and which ordered chain of models should run a classified task.

Pure functions: the service feeds them the policy and the providers the executors announced.
"""

from __future__ import annotations

from switchyard.common.errors import NoProviderAvailable, SwitchyardError
from switchyard.common.events import ChatRequest, Classification, RouteCandidate, RoutingDecision
from switchyard.common.policy import TIER_ORDER, ModelSpec, Policy

AUTO = "auto"


class UnknownModel(SwitchyardError):
    code = "model_not_found"


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A cheap estimate (~4 characters a token plus per-message overhead) for cost and context checks."""
    chars = sum(len(m.text()) for m in request.messages)
    return chars // 4 + 4 * len(request.messages) + 2


def tier_for(complexity: float, policy: Policy) -> str:
    if complexity < policy.thresholds.fast_below:
        return "fast"
    if complexity > policy.thresholds.premium_above:
        return "premium"
    return "standard"


def tier_preference(tier: str) -> list[str]:
    """The chosen tier, then the better tiers (quality first), then the cheaper ones, local last."""
    paid = [t for t in TIER_ORDER if t != "local"]
    idx = paid.index(tier)
    return [*paid[idx:], *reversed(paid[:idx]), "local"]


def _candidate(spec: ModelSpec, prompt_tokens: int, output_tokens: int) -> RouteCandidate:
    return RouteCandidate(
        model=spec.id,
        provider=spec.provider,
        upstream_model=spec.upstream,
        tier=spec.tier,
        estimated_cost_usd=round(spec.cost(prompt_tokens, output_tokens), 8),
    )


def decide(
    *,
    request: ChatRequest,
    classification: Classification,
    policy: Policy,
    available: set[str],
) -> RoutingDecision:
    prompt_tokens = estimate_prompt_tokens(request)
    output_tokens = request.max_tokens or policy.expected_output_tokens
    if request.model != AUTO:
        return _pinned(request.model, policy, available, prompt_tokens, output_tokens)

    wanted = tier_for(classification.complexity, policy)
    rejected: list[dict[str, str]] = []
    chain: list[RouteCandidate] = []
    for tier in tier_preference(wanted):
        for spec in policy.in_tier(tier):
            if spec.provider not in available:
                rejected.append({"model": spec.id, "reason": f"provider {spec.provider} not available"})
            elif prompt_tokens + output_tokens > spec.context_window:
                rejected.append({"model": spec.id, "reason": "prompt exceeds the context window"})
            else:
                chain.append(_candidate(spec, prompt_tokens, output_tokens))
    if not chain:
        raise NoProviderAvailable("no configured provider can serve this task")
    chosen = chain[0]
    return RoutingDecision(
        strategy="single",
        tier=chosen.tier,
        candidates=chain,
        policy_version=policy.version,
        estimated_prompt_tokens=prompt_tokens,
        reasons={
            "features": {
                "type": classification.type,
                "complexity": round(classification.complexity, 4),
                "confidence": round(classification.confidence, 4),
                "urgency": round(classification.urgency, 4),
            },
            "wanted_tier": wanted,
            "chosen": chosen.model,
            "why": _why(wanted, chosen.tier, classification.complexity, policy),
            "rejected": rejected,
        },
    )


def _why(wanted: str, got: str, complexity: float, policy: Policy) -> str:
    th = policy.thresholds
    bands = f"fast < {th.fast_below} <= standard <= {th.premium_above} < premium"
    base = f"complexity {complexity:.2f} -> {wanted} ({bands})"
    if wanted != got:
        return f"{base}; no available model in {wanted}, using {got}"
    return base


def _pinned(
    model: str, policy: Policy, available: set[str], prompt_tokens: int, output_tokens: int
) -> RoutingDecision:
    spec = policy.model(model)
    if spec is None:
        provider, _, upstream = model.partition("/")
        if not upstream or provider not in available or provider == "local":
            raise UnknownModel(f"the model '{model}' does not exist or is not configured")
        candidate = RouteCandidate(model=model, provider=provider, upstream_model=upstream, tier="pinned")
    else:
        if spec.provider not in available:
            raise NoProviderAvailable(f"the model '{model}' is configured but its provider is not available")
        candidate = _candidate(spec, prompt_tokens, output_tokens)
    return RoutingDecision(
        strategy="single",
        tier=candidate.tier,
        candidates=[candidate],
        policy_version=policy.version,
        estimated_prompt_tokens=prompt_tokens,
        reasons={"pinned": model, "chosen": candidate.model, "why": "the client named the model"},
    )
