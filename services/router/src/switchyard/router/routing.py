"""Routing decisions: a strategy and an ordered candidate chain for a classified task, with the reasons.

`decide` is pure: the service feeds it the policy, the providers the executors announced, the tenant's
budget headroom and live model health, and it returns the same decision for the same inputs; the
reasons carry every input that mattered (features, signals, scores, chosen, rejected and why), so a
decision can be audited and replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from switchyard.common.errors import NoProviderAvailable, SwitchyardError
from switchyard.common.events import ChatRequest, Classification, RouteCandidate, RoutingDecision
from switchyard.common.media_tokens import media_tokens
from switchyard.common.policy import ModelSpec, Policy, Thresholds
from switchyard.router.chain import (
    Chain,
    build_chain,
    model_order,
    needs,
    rank,
    reorder_by_health,
    tier_preference,
)
from switchyard.router.health import ModelSignal
from switchyard.router.strategy import plan

AUTO = "auto"
__all__ = [
    "AUTO",
    "CapabilityUnavailable",
    "ContextTooLong",
    "ModelNotAllowed",
    "UnknownModel",
    "allowed_set",
    "budget_state",
    "check_allowed",
    "decide",
    "estimate_prompt_tokens",
    "tier_for",
    "tier_preference",
    "within",
]


# Providers whose API gives one answer per call: a model of theirs the policy does not list cannot serve a
# request for several (`n`); listed models say so by their `choices` capability.
ONE_ANSWER_PROVIDERS = frozenset({"anthropic"})
# Providers whose API returns no token log probabilities (Anthropic's Messages API has no such field).
NO_LOGPROBS_PROVIDERS = frozenset({"anthropic"})
MAX_REASONS = 6  # models named, with why each was left out, in a `no_provider_available` message


class UnknownModel(SwitchyardError):
    code = "model_not_found"


class ContextTooLong(NoProviderAvailable):
    """Every available model's context window is smaller than the prompt and its reply: the client must
    shorten one of them (a 400 at the gateway); unlike other `no_provider_available` causes, waiting
    does not help."""

    code = "context_length_exceeded"

    def __init__(self, message: str, *, window: int, reply_tokens: int) -> None:
        super().__init__(message)
        self.window = window  # the largest context window the task could go to
        self.reply_tokens = reply_tokens  # what its reply is counted for in it

    @property
    def room(self) -> int:
        """The prompt tokens that window takes (`truncation.fitted` cuts a prompt to them)."""
        return self.window - self.reply_tokens


class CapabilityUnavailable(NoProviderAvailable):
    """No available model has what the task needs (vision, PDFs, tools, JSON mode), and the others are too
    small for it: the client must send a task this deployment can serve (a 400 at the gateway, which SDKs
    do not retry); unlike a provider that is down, waiting does not help."""

    code = "capability_unavailable"


class ModelLacksCapability(UnknownModel):
    """The client named a model the policy says cannot serve the request (tools, JSON mode, images, PDFs)."""

    code = "model_lacks_capability"


class ModelNotAllowed(UnknownModel):
    """The API key that sent the task may not use this model (its allow-list, `TaskSubmitted.allowed_models`):
    the gateway refuses such a request before admission, so this is the router keeping the rule too."""

    code = "model_not_allowed"


def allowed_set(policy: Policy, names: Collection[str] | None) -> frozenset[str] | None:
    """The model ids (and `auto`) an API key's allow-list stands for: each name, an alias as its target.
    None: the key may use every model."""
    return None if names is None else frozenset(policy.resolve(n) for n in names)


def check_allowed(model: str, allowed: frozenset[str] | None) -> None:
    """Raises ModelNotAllowed when `model` (an id or `auto`) is outside the key's allow-list."""
    if allowed is not None and model not in allowed:
        raise ModelNotAllowed(f"the model '{model}' is not in this API key's allowed models")


def within(policy: Policy, allowed: frozenset[str] | None) -> Policy:
    """`policy` with only the allowed models: what `auto` routes, falls back and escalates among for a key
    with an allow-list (a chain's other models are skipped as unknown: `build_chain`)."""
    if allowed is None:
        return policy
    return policy.model_copy(update={"models": [m for m in policy.models if m.id in allowed]})


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A cheap estimate (~4 characters a token plus per-message overhead, and the images' and PDFs' as
    `media_tokens` counts them), when no tokenizer is given."""
    chars = sum(len(m.text()) for m in request.messages)
    return chars // 4 + 4 * len(request.messages) + 2 + media_tokens(request.messages)


def tier_for(complexity: float, policy: Policy) -> str:
    if complexity < policy.thresholds.fast_below:
        return "fast"
    if complexity > policy.thresholds.premium_above:
        return "premium"
    return "standard"


def budget_state(headroom_usd: float | None, policy: Policy) -> str:
    if headroom_usd is None:
        return "unlimited"
    if headroom_usd <= 0:
        return "exhausted"
    if headroom_usd < policy.budget.downgrade_below_usd:
        return "low"
    return "ok"


def _candidate(spec: ModelSpec, prompt_tokens: int, output_tokens: int, answers: int = 1) -> RouteCandidate:
    """`answers`: how many the request asks for (`n`); each is output paid for, the prompt once."""
    return RouteCandidate(
        model=spec.id,
        provider=spec.provider,
        upstream_model=spec.upstream,
        tier=spec.tier,
        estimated_cost_usd=round(spec.cost(prompt_tokens, output_tokens * answers), 8),
        reasoning="reasoning" in spec.capabilities,
        context_window=spec.context_window,
    )


def decide(
    *,
    request: ChatRequest,
    classification: Classification,
    policy: Policy,
    available: set[str],
    tenant_id: str = "",
    prompt_tokens: int | None = None,
    headroom_usd: float | None = None,
    health: Mapping[str, ModelSignal] | None = None,
    adaptive_premium: Callable[[Thresholds], float | None] | None = None,
    allowed_models: Collection[str] | None = None,
    budget_calls: int | None = None,
) -> RoutingDecision:
    """`adaptive_premium` gives the premium threshold for the policy's `premium_share` (None while it
    warms up); the threshold used is in the reasons, so a replay passes it back. A model name that is one
    of the policy's aliases is routed as its target (`auto` or a model), the alias named in the reasons.
    `allowed_models`: the API key's allow-list (`TaskSubmitted.allowed_models`): a named model outside it
    is refused, and `auto` routes only among it. `budget_calls`: the billed calls a hard budget reserved
    for the task (`TaskBudget.calls`): no race of more racers, no cascade of more steps."""
    alias = request.model if request.model in policy.aliases else None
    if alias is not None:
        request = request.model_copy(update={"model": policy.resolve(alias)})
    allowed = allowed_set(policy, allowed_models)
    check_allowed(request.model, allowed)
    tokens = estimate_prompt_tokens(request) if prompt_tokens is None else prompt_tokens
    effective = within(policy.for_tenant(tenant_id), allowed)
    adaptive = None
    if effective.thresholds.premium_share is not None and adaptive_premium is not None:
        adaptive = adaptive_premium(effective.thresholds)
    if adaptive is not None:
        th = effective.thresholds
        moved = th.model_copy(update={"premium_above": max(adaptive, th.fast_below)})
        effective = effective.model_copy(update={"thresholds": moved})
    output_tokens = request.max_tokens or effective.output_tokens(classification.type)  # of each answer
    if request.model != AUTO:
        listed = policy.model(request.model)  # the whole policy's: a model the tenant may not use too
        if listed is not None and listed.embeds:
            raise ModelLacksCapability(
                f"the model '{request.model}' is an embedding model: send it to /v1/embeddings"
            )
        if listed is not None and effective.model(request.model) is None:
            # listed, but not for this tenant (denied, or above its max_tier): not a pass-through name
            raise UnknownModel(f"the model '{request.model}' is not available to this tenant")
        if listed is None and _restricted(policy, tenant_id):
            # a pass-through name has no tier and no price: it would be a way round the tenant's limits
            raise UnknownModel(
                f"the model '{request.model}' is not available to this tenant: it may use only the "
                "models the routing policy lists"
            )
        required = needs(request)
        pinned = _pinned(
            request.model,
            effective,
            available,
            tokens,
            output_tokens,
            required=required,
            answers=request.n,
        )
        return _named(pinned, alias)

    signals = health or {}
    money = budget_state(headroom_usd, effective)
    wanted = tier_for(classification.complexity, effective)
    complexity_tier = wanted
    if classification.type == "coordination" and wanted != "premium" and effective.in_tier("coordination"):
        wanted = "coordination"
    max_tier = None
    if money in ("low", "exhausted"):
        max_tier = effective.budget.downgrade_max_tier
        if rank(wanted) > rank(max_tier):
            wanted = max_tier
    cost_mode = money in ("low", "exhausted") or wanted in ("fast", "local")
    order = model_order(effective, task_type=classification.type, wanted=wanted, cost_mode=cost_mode)
    required = needs(request)
    chain = build_chain(
        effective,
        order=order,
        available=available,
        required=required,
        prompt_tokens=tokens,
        output_tokens=output_tokens,
        answers=request.n,
        headroom_usd=headroom_usd,
        max_tier=max_tier,
    )
    if not chain.kept:
        raise _unservable(
            chain, required, tokens, output_tokens, max_tokens=request.max_tokens, allowed=allowed
        )
    chain = reorder_by_health(chain, effective, signals)
    candidates = [_candidate(s, tokens, output_tokens, request.n) for s in chain.kept]
    healthy = len(candidates) - len(chain.demoted)
    p = plan(
        request=request,
        classification=classification,
        policy=effective,
        candidates=candidates,
        healthy=healthy,
        wanted=wanted,
        budget_state=money,
        budget_calls=budget_calls,
    )
    chosen = p.candidates[0]
    decision = RoutingDecision(
        strategy=p.strategy,
        tier=chosen.tier,
        candidates=p.candidates,
        policy_version=effective.version,
        estimated_prompt_tokens=tokens,
        estimated_cost_usd=p.estimated_cost_usd,
        fan_out=p.fan_out,
        parallel_mode=p.parallel_mode,
        checks=p.checks,
        min_confidence=p.min_confidence,
        reasons={
            "features": {
                "type": classification.type,
                "complexity": round(classification.complexity, 4),
                "confidence": round(classification.confidence, 4),
                "urgency": round(classification.urgency, 4),
                "prompt_tokens": tokens,
                "expected_output_tokens": output_tokens,
                "answers": request.n,
                "stream": request.stream,
                "needs": sorted(needs(request)),
            },
            "tenant": {"id": tenant_id, "override": tenant_id in policy.tenants},
            **({} if allowed is None else {"allowed_models": sorted(allowed)}),
            "budget": {"headroom_usd": headroom_usd, "state": money, "max_tier": max_tier},
            "thresholds": {
                "fast_below": effective.thresholds.fast_below,
                "premium_above": round(effective.thresholds.premium_above, 6),
                "adaptive_share": effective.thresholds.premium_share if adaptive is not None else None,
            },
            "complexity_tier": complexity_tier,
            "wanted_tier": wanted,
            "strategy": p.strategy,
            "strategy_why": p.why,
            "chosen": chosen.model,
            "why": _why(wanted, chosen.tier, classification.complexity, effective),
            "scores": [
                {
                    "model": c.model,
                    "tier": c.tier,
                    "estimated_cost_usd": c.estimated_cost_usd,
                    "demoted": chain.demoted.get(c.model),
                    **(signals[c.model].as_reason() if c.model in signals else {}),
                }
                for c in p.candidates
            ],
            "rejected": chain.rejected,
            "policy_fingerprint": fingerprint(policy),
        },
    )
    return _named(decision, alias)


def _restricted(policy: Policy, tenant_id: str) -> bool:
    """Whether the tenant's override limits its models (a tier cap or denied models)."""
    o = policy.tenants.get(tenant_id)
    return o is not None and (o.max_tier is not None or bool(o.denied_models))


def _named(decision: RoutingDecision, alias: str | None) -> RoutingDecision:
    """The decision, naming the alias the client sent when it sent one."""
    if alias is not None:
        decision.reasons["alias"] = alias
    return decision


# Policies are frozen models, replaced (never changed) on a reload: id -> (the policy, its fingerprint).
_FINGERPRINTS: dict[int, tuple[Policy, str]] = {}


def fingerprint(policy: Policy) -> str:
    """`policy.fingerprint()` once per policy: it hashes the whole policy's JSON (~0.2 ms), as much as the
    rest of a decision."""
    cached = _FINGERPRINTS.get(id(policy))
    if cached is None or cached[0] is not policy:
        if len(_FINGERPRINTS) >= 8:
            _FINGERPRINTS.clear()
        cached = _FINGERPRINTS[id(policy)] = (policy, policy.fingerprint())
    return cached[1]


def _why(wanted: str, got: str, complexity: float, policy: Policy) -> str:
    th = policy.thresholds
    bands = f"fast < {th.fast_below} <= standard <= {th.premium_above} < premium"
    base = f"complexity {complexity:.2f} -> {wanted} ({bands})"
    if wanted != got:
        return f"{base}; no available model in {wanted}, using {got}"
    return base


def _unservable(
    chain: Chain,
    required: set[str],
    prompt_tokens: int,
    output_tokens: int,
    *,
    max_tokens: int | None,
    allowed: frozenset[str] | None = None,
) -> NoProviderAvailable:
    """Why no model is left (`chain.kept` is empty), for the client: the context window when that is what
    every available model lacks, else each model's reason."""
    if allowed is not None and not chain.refused and not chain.unavailable:
        return NoProviderAvailable(
            f"none of this API key's allowed models ({', '.join(sorted(allowed - {AUTO}))}) is one the "
            "routing policy routes `auto` to: name one of them as the model"
        )
    if chain.too_small and len(chain.too_small) == len(chain.refused):
        largest = max(chain.too_small, key=lambda m: chain.too_small[m])
        reply = f"max_tokens ({max_tokens})" if max_tokens else f"a reply ({output_tokens} tokens expected)"
        fix = "shorten the prompt or lower max_tokens" if max_tokens else "shorten the prompt"
        return ContextTooLong(
            f"the prompt (about {prompt_tokens} tokens) and {reply} exceed the context window of every "
            f"available model (the largest, {largest}, takes {chain.too_small[largest]} tokens): {fix}",
            window=chain.too_small[largest],
            reply_tokens=max_tokens or output_tokens,
        )
    needed = f" (it needs {', '.join(sorted(required))})" if required else ""
    why = chain.refused[:MAX_REASONS]
    if chain.unavailable:
        why.append(f"providers not available: {', '.join(sorted(chain.unavailable))}")
    message = f"no configured provider can serve this task{needed}: {'; '.join(why)}"
    if chain.lacking and len(chain.lacking) + len(chain.too_small) == len(chain.refused):
        return CapabilityUnavailable(message)
    return NoProviderAvailable(message)


def _too_long_for(model: str, window: int, prompt_tokens: int) -> ContextTooLong:
    """A named model's window too small for the prompt alone, in words the gateway's Anthropic face reads
    the numbers from."""
    return ContextTooLong(
        f"the prompt (about {prompt_tokens} tokens) exceeds the context window of the model {model} "
        f"({window} tokens): shorten the prompt",
        window=window,
        reply_tokens=0,
    )


def _pinned(
    model: str,
    policy: Policy,
    available: set[str],
    prompt_tokens: int,
    output_tokens: int,
    *,
    required: set[str],
    answers: int = 1,
) -> RoutingDecision:
    """A model the policy does not list is passed through as asked; a listed one must have what the
    request needs, or the client hears why instead of an answer that ignored its tools or schema, and
    its context window must hold the prompt (what every provider refuses; `max_tokens` is left to the
    provider, which clamps or refuses it its own way)."""
    spec = policy.model(model)
    if spec is None:
        provider, _, upstream = model.partition("/")
        if not upstream or provider not in available or provider == "local":
            raise UnknownModel(f"the model '{model}' does not exist or is not configured")
        if "choices" in required and provider in ONE_ANSWER_PROVIDERS:
            raise ModelLacksCapability(
                f"the model '{model}' gives one answer per request ({provider}'s API has no `n`); "
                "ask for n = 1, or name a model that gives several"
            )
        if "logprobs" in required and provider in NO_LOGPROBS_PROVIDERS:
            raise ModelLacksCapability(
                f"the model '{model}' returns no token log probabilities ({provider}'s API has none); "
                "drop `logprobs`, or name a model that returns them"
            )
        candidate = RouteCandidate(
            model=model, provider=provider, upstream_model=upstream, tier="pinned", reasoning=True
        )
    else:
        if spec.provider not in available:
            raise NoProviderAvailable(f"the model '{model}' is configured but its provider is not available")
        missing = required - spec.serves()
        if missing:
            raise ModelLacksCapability(
                f"the model '{model}' lacks {', '.join(sorted(missing))}, which this request needs; "
                'use model "auto" to route to a model that has it'
            )
        if prompt_tokens > spec.context_window:
            raise _too_long_for(model, spec.context_window, prompt_tokens)
        candidate = _candidate(spec, prompt_tokens, output_tokens, answers)
    return RoutingDecision(
        strategy="single",
        tier=candidate.tier,
        candidates=[candidate],
        policy_version=policy.version,
        estimated_prompt_tokens=prompt_tokens,
        estimated_cost_usd=candidate.estimated_cost_usd,
        reasons={"pinned": model, "chosen": candidate.model, "why": "the client named the model"},
    )
