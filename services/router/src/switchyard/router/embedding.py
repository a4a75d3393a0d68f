"""Routing an embedding task: the model the client named, then the other deployments of its vector space.

Pure, like `routing.decide`. Vectors of two models cannot be compared (an index built with one is garbage
to the other, even at the same length), so there is no `auto` and no tier walk: a fallback is only a model
of the same `embedding.space` (another deployment of the same model). The strategy is always `single`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from switchyard.common import vectors
from switchyard.common.errors import NoProviderAvailable, SwitchyardError
from switchyard.common.events import EmbeddingRequest, RouteCandidate, RoutingDecision
from switchyard.common.policy import ModelSpec, Policy
from switchyard.router.chain import Chain, reorder_by_health
from switchyard.router.health import ModelSignal
from switchyard.router.routing import (
    AUTO,
    ModelLacksCapability,
    UnknownModel,
    allowed_set,
    budget_state,
    check_allowed,
    fingerprint,
    within,
)

# Providers whose API has embeddings: a model of theirs the policy does not list is passed through as
# named (Anthropic has no embeddings; another provider's model must be listed with its `embedding`).
PASS_THROUGH_PROVIDERS = frozenset({"openai", "gemini"})


class EmbeddingRefused(SwitchyardError):
    """The request cannot be served as asked; the client must change it (a 400 at the gateway)."""


class EmbeddingDimensions(EmbeddingRefused):
    code = "embedding_dimensions_unsupported"


class ResultTooLarge(EmbeddingRefused):
    code = "embedding_result_too_large"


def estimate_input_tokens(request: EmbeddingRequest) -> int:
    """A cheap estimate (~4 characters a token), when no tokenizer is given."""
    return sum(len(text) // 4 + 1 for text in request.input)


def decide_embedding(
    *,
    request: EmbeddingRequest,
    policy: Policy,
    available: set[str],
    tenant_id: str = "",
    prompt_tokens: int | None = None,
    headroom_usd: float | None = None,
    health: Mapping[str, ModelSignal] | None = None,
    allowed_models: Collection[str] | None = None,
) -> RoutingDecision:
    """The named model first, then the others of its space whose provider is announced, that the
    tenant's policy allows, that give the vectors' length asked for and whose cost (input tokens only)
    fits the budget headroom; the healthy ones before the demoted ones. An alias is its target. With
    `allowed_models` (the API key's allow-list), the named model must be in it and so must a fallback."""
    tokens = estimate_input_tokens(request) if prompt_tokens is None else prompt_tokens
    if request.model in policy.aliases:
        request = request.model_copy(update={"model": policy.resolve(request.model)})
    allowed = allowed_set(policy, allowed_models)
    check_allowed(request.model, allowed)
    named = policy.model(request.model)
    if named is None or named.embedding is None:
        return _passed_through(request, policy, available, tokens)
    dims = named.embedding.gives(request.dimensions)
    if dims is None:
        raise EmbeddingDimensions(_dimensions_message(named, request.dimensions))
    _check_size(len(request.input), dims)
    effective = policy.for_tenant(tenant_id)
    space = named.space()
    same_space = [
        m for m in within(policy, allowed).embedding_models() if m.id != named.id and m.space() == space
    ]
    chain = Chain()
    tenant_refused = False
    for spec in [named, *same_space]:
        assert spec.embedding is not None
        cost = spec.cost(tokens, 0)
        reason = None
        if effective.model(spec.id) is None:
            reason = "not allowed to this tenant by the routing policy"
            tenant_refused = tenant_refused or spec is named
        elif spec.provider not in available:
            reason = f"provider {spec.provider} not available"
        elif spec.embedding.gives(request.dimensions) != dims:
            reason = f"does not give vectors of {dims} dimensions"
        elif headroom_usd is not None and cost > max(headroom_usd, 0.0):
            reason = f"estimated cost {cost:.6f} USD exceeds the budget headroom {headroom_usd:.6f} USD"
        if reason is None:
            chain.kept.append(spec)
        else:
            chain.rejected.append({"model": spec.id, "reason": reason})
            chain.refused.append(f"{spec.id}: {reason}")
    if not chain.kept:
        if tenant_refused and all(r["reason"].startswith("not allowed") for r in chain.rejected):
            raise UnknownModel(f"the model '{named.id}' is not available to this tenant")
        raise NoProviderAvailable(
            f"no configured provider can serve this embedding task: {'; '.join(chain.refused)}"
        )
    signals = health or {}
    chain = reorder_by_health(chain, effective, signals)
    candidates = [_candidate(spec, tokens, dims) for spec in chain.kept]
    chosen = candidates[0]
    return RoutingDecision(
        strategy="single",
        tier=chosen.tier,
        candidates=candidates,
        policy_version=effective.version,
        estimated_prompt_tokens=tokens,
        estimated_cost_usd=chosen.estimated_cost_usd,
        reasons={
            "kind": "embedding",
            "features": _features(request, tokens),
            "tenant": {"id": tenant_id, "override": tenant_id in policy.tenants},
            "budget": {"headroom_usd": headroom_usd, "state": budget_state(headroom_usd, effective)},
            "pinned": request.model,
            "space": space,
            "dimensions": dims,
            "strategy": "single",
            "chosen": chosen.model,
            "why": _why(named.id, chosen.model, chain),
            "scores": [
                {
                    "model": c.model,
                    "tier": c.tier,
                    "estimated_cost_usd": c.estimated_cost_usd,
                    "demoted": chain.demoted.get(c.model),
                    **(signals[c.model].as_reason() if c.model in signals else {}),
                }
                for c in candidates
            ],
            "rejected": chain.rejected,
            "policy_fingerprint": fingerprint(policy),
        },
    )


def _features(request: EmbeddingRequest, tokens: int) -> dict[str, object]:
    """What the decision was made on, in its reasons (as a chat decision's `features`)."""
    return {
        "type": "embedding",
        "inputs": len(request.input),
        "prompt_tokens": tokens,
        "dimensions": request.dimensions,
    }


def _candidate(spec: ModelSpec, prompt_tokens: int, dimensions: int) -> RouteCandidate:
    return RouteCandidate(
        model=spec.id,
        provider=spec.provider,
        upstream_model=spec.upstream,
        tier=spec.tier,
        estimated_cost_usd=round(spec.cost(prompt_tokens, 0), 8),
        dimensions=dimensions,
    )


def _why(named: str, chosen: str, chain: Chain) -> str:
    if chosen == named:
        return "the client named the model"
    left_out = chain.demoted.get(named) or next(
        (r["reason"] for r in chain.rejected if r["model"] == named), "not available"
    )
    return f"the client named {named} ({left_out}): {chosen} serves the same vector space"


def _passed_through(
    request: EmbeddingRequest, policy: Policy, available: set[str], tokens: int
) -> RoutingDecision:
    """A name the policy does not list as an embedding model: `auto` and chat models are refused (with
    the models to use instead); an OpenAI or Gemini model the policy does not list goes as named,
    unpriced, with the length asked for."""
    model = request.model
    provider, _, upstream = model.partition("/")
    spec = policy.model(model)
    if model == AUTO or spec is not None:
        what = "'auto' picks a chat model" if model == AUTO else f"the model '{model}' serves chat"
        raise ModelLacksCapability(f"{what}: {_use_instead(policy, available)}")
    if provider == "anthropic":
        raise ModelLacksCapability(
            f"the model '{model}': Anthropic has no embeddings API: {_use_instead(policy, available)}"
        )
    if not upstream or provider not in available or provider == "local":
        raise UnknownModel(f"the model '{model}' does not exist or is not configured")
    if provider not in PASS_THROUGH_PROVIDERS:
        raise ModelLacksCapability(
            f"the model '{model}' is not an embedding model of the routing policy (a model of provider "
            f"{provider} must be listed there with its `embedding`): {_use_instead(policy, available)}"
        )
    if request.dimensions is not None:
        _check_size(len(request.input), request.dimensions)
    candidate = RouteCandidate(
        model=model, provider=provider, upstream_model=upstream, tier="pinned", dimensions=request.dimensions
    )
    return RoutingDecision(
        strategy="single",
        tier=candidate.tier,
        candidates=[candidate],
        policy_version=policy.version,
        estimated_prompt_tokens=tokens,
        estimated_cost_usd=0.0,
        reasons={
            "kind": "embedding",
            "features": _features(request, tokens),
            "pinned": model,
            "chosen": model,
            "why": "the client named a model the policy does not list: passed through as named",
        },
    )


def _use_instead(policy: Policy, available: set[str]) -> str:
    models = policy.embedding_models()
    served = [m.id for m in models if m.provider in available] or [m.id for m in models]
    return f"embeddings need an embedding model: one of {', '.join(served)}"


def _dimensions_message(spec: ModelSpec, asked: int | None) -> str:
    assert spec.embedding is not None
    e = spec.embedding
    if e.min_dimensions is None:
        can = f"only vectors of {e.dimensions} dimensions"
    else:
        can = f"vectors of {e.min_dimensions} to {e.dimensions} dimensions"
    return f"the model '{spec.id}' gives {can}, not {asked}"


def _check_size(inputs: int, dimensions: int) -> None:
    if not vectors.fits(inputs, dimensions):
        size = vectors.result_bytes(inputs, dimensions)
        raise ResultTooLarge(
            f"{inputs} vectors of {dimensions} dimensions ({size} bytes) exceed the "
            f"{vectors.MAX_RESULT_BYTES} bytes one answer holds: send at most "
            f"{vectors.most_inputs(dimensions)} inputs per request"
        )
