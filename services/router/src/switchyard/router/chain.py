"""Building a task's ordered candidate chain: the task type's chain, then the tier walk; filtered by
availability, context window, capabilities and budget; reordered by live health. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from switchyard.common.documents import has_documents
from switchyard.common.events import ChatRequest
from switchyard.common.policy import TIER_ORDER, ModelSpec, Policy
from switchyard.router.health import ModelSignal

PAID_TIERS = tuple(t for t in TIER_ORDER if t != "local")


def tier_preference(tier: str) -> list[str]:
    """The chosen tier, then the better tiers (quality first), then the cheaper ones, local last."""
    if tier == "local":
        return ["local", *PAID_TIERS]
    idx = PAID_TIERS.index(tier)
    return [*PAID_TIERS[idx:], *reversed(PAID_TIERS[:idx]), "local"]


def rank(tier: str) -> int:
    return TIER_ORDER.index(tier)


def needs(request: ChatRequest) -> set[str]:
    """Capabilities a model must have to serve the request: images in it need vision, documents (PDFs)
    a model that reads them; tools offered, or
    tool calls and results in the conversation, need tools; a JSON answer held to a schema needs a model
    that does structured outputs (`json_schema`, which JSON mode implies), JSON without one JSON mode;
    several answers (`n`) a model that gives them in one call; token log probabilities a model that
    returns them."""
    out: set[str] = set()
    for m in request.messages:
        if isinstance(m.content, list) and any(p.get("type") == "image_url" for p in m.content):
            out.add("vision")
    if has_documents(request.messages):
        out.add("pdf")
    if request.uses_tools():
        out.add("tools")
    if request.json_format() is not None:
        out.add("json_schema" if request.json_schema() else "json_mode")
    if request.n > 1:
        out.add("choices")
    if request.logprobs:
        out.add("logprobs")
    return out


@dataclass
class Chain:
    kept: list[ModelSpec] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    demoted: dict[str, str] = field(default_factory=dict)  # model id -> why
    refused: list[str] = field(default_factory=list)  # available models left out: "model: why"
    too_small: dict[str, int] = field(default_factory=dict)  # of those, context window < prompt + reply
    lacking: list[str] = field(default_factory=list)  # of those, without a capability the task needs
    unavailable: list[str] = field(default_factory=list)  # providers that are not, in the order met


def model_order(policy: Policy, *, task_type: str, wanted: str, cost_mode: bool) -> list[str]:
    """Model ids in preference order, before any filter."""
    ids: list[str] = []
    chain = policy.chains.get(task_type)
    if chain is not None:
        if cost_mode and chain.cost_sensitive:
            ids.append(chain.cost_sensitive)
        elif wanted != "premium":
            ids += [chain.primary, *chain.fallback]
    for tier in tier_preference(wanted):
        ids += [m.id for m in policy.in_tier(tier)]
    return list(dict.fromkeys(ids))


def build_chain(
    policy: Policy,
    *,
    order: list[str],
    available: set[str],
    required: set[str],
    prompt_tokens: int,
    output_tokens: int,
    headroom_usd: float | None,
    max_tier: str | None,
    answers: int = 1,
) -> Chain:
    """`output_tokens` of each answer; `answers` the request asks for (`n`), each one output paid for,
    each within the context window on its own."""
    out = Chain()
    for model_id in order:
        spec = policy.model(model_id)
        if spec is None or spec.embeds:  # an embedding model answers no chat (the policy's chains name none)
            continue
        cost = spec.cost(prompt_tokens, output_tokens * answers)
        missing = required - spec.serves()
        reason = None
        if spec.provider not in available:
            reason = f"provider {spec.provider} not available"
            if spec.provider not in out.unavailable:
                out.unavailable.append(spec.provider)
        elif missing:  # the local model too: it would ignore the images or tools, not refuse them
            reason = f"lacks {', '.join(sorted(missing))}"
            out.lacking.append(spec.id)
        elif prompt_tokens + output_tokens > spec.context_window:  # what it could read: does it fit?
            reason = f"prompt exceeds the context window ({spec.context_window} tokens)"
            out.too_small[spec.id] = spec.context_window
        elif max_tier is not None and rank(spec.tier) > rank(max_tier) and cost > 0:
            reason = f"budget low: tiers above {max_tier} are not used"
        elif headroom_usd is not None and cost > max(headroom_usd, 0.0):
            reason = f"estimated cost {cost:.6f} USD exceeds the budget headroom {headroom_usd:.6f} USD"
        if reason is None:
            out.kept.append(spec)
        else:
            out.rejected.append({"model": spec.id, "reason": reason})
        if reason is not None and spec.provider in available:
            out.refused.append(f"{spec.id}: {reason}")
    return out


def demotion(signal: ModelSignal | None, policy: Policy) -> str | None:
    """Why live health puts a model behind the healthy ones, or None."""
    if signal is None:
        return None
    h = policy.health
    if signal.breaker == "open":
        return "circuit breaker open"
    if (
        signal.success is not None
        and signal.samples >= h.min_samples
        and signal.success < h.demote_below_success
    ):
        return f"success EMA {signal.success:.2f} < {h.demote_below_success}"
    if signal.rate_headroom is not None and signal.rate_headroom < h.min_rate_headroom:
        return f"rate-limit headroom {signal.rate_headroom:.0%} < {h.min_rate_headroom:.0%}"
    return None


def reorder_by_health(chain: Chain, policy: Policy, health: Mapping[str, ModelSignal]) -> Chain:
    """Healthy candidates first (their order kept), then the demoted ones: never dropped, since a
    provider that recovers must get traffic again and a last resort beats no answer."""
    healthy, demoted = [], []
    for spec in chain.kept:
        why = demotion(health.get(spec.id), policy)
        if why is None:
            healthy.append(spec)
        else:
            demoted.append(spec)
            chain.demoted[spec.id] = why
    chain.kept = healthy + demoted
    return chain
