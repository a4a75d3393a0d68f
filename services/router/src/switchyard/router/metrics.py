from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from switchyard.common.errors import NoProviderAvailable, SwitchyardError
from switchyard.common.events import RoutingDecision
from switchyard.common.events.tasks import Strategy
from switchyard.common.metrics import zero
from switchyard.common.policy import Policy
from switchyard.router import embedding, routing

DECISIONS = Counter(
    "switchyard_router_decisions_total", "Routing decisions by strategy and first tier", ["strategy", "tier"]
)
ESTIMATED_COST = Counter(
    "switchyard_router_estimated_cost_usd_total", "Estimated cost of routed tasks, USD", ["strategy"]
)
DECIDE_SECONDS = Histogram(
    "switchyard_router_decide_seconds",
    "Time to decide one task (tokenising included)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
REJECTED = Counter("switchyard_router_unroutable_total", "Tasks no candidate could serve", ["code"])
POLICY_RELOADS = Counter("switchyard_router_policy_reloads_total", "Policy reloads by outcome", ["outcome"])
POLICY_INFO = Gauge(
    "switchyard_router_policy_info", "The policy in force (value 1)", ["version", "fingerprint"]
)
STATS_UPDATES = Counter("switchyard_router_stats_updates_total", "Provider calls folded into model stats")


def observe_decision(decision: RoutingDecision, seconds: float) -> None:
    DECISIONS.labels(decision.strategy, decision.tier).inc()
    ESTIMATED_COST.labels(decision.strategy).inc(decision.estimated_cost_usd)
    DECIDE_SECONDS.observe(seconds)


# what the router answers a task it cannot route (`app.on_classified`)
REFUSALS: tuple[type[SwitchyardError], ...] = (
    routing.UnknownModel,
    routing.ModelLacksCapability,
    routing.ModelNotAllowed,
    NoProviderAvailable,
    routing.ContextTooLong,
    routing.CapabilityUnavailable,
    embedding.EmbeddingDimensions,
    embedding.ResultTooLarge,
)


def at_start(policy: Policy) -> None:
    """The counters' label values known at start, at 0: decisions by strategy and each tier the policy's
    models are in (a reloaded policy's new tier is born at its first decision)."""
    strategies = get_args(Strategy)
    tiers = sorted({model.tier for model in policy.models})
    zero(DECISIONS, [(strategy, tier) for strategy in strategies for tier in tiers])
    zero(ESTIMATED_COST, [(strategy,) for strategy in strategies])
    zero(REJECTED, [(refusal.code,) for refusal in REFUSALS])
    zero(POLICY_RELOADS, [("ok",), ("invalid",)])
