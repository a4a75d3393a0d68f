"""Choosing how to run a task (single, parallel, cascade) and what it is expected to cost. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchyard.common.events import ChatRequest, Classification, RouteCandidate
from switchyard.common.events.tasks import ParallelMode, Strategy
from switchyard.common.policy import Policy
from switchyard.router.chain import rank


@dataclass(frozen=True, slots=True)
class Plan:
    strategy: Strategy
    candidates: list[RouteCandidate]
    why: str
    fan_out: int = 1
    parallel_mode: ParallelMode = "race"
    checks: list[str] = field(default_factory=list)
    min_confidence: float = 0.0
    estimated_cost_usd: float = 0.0


def plan(
    *,
    request: ChatRequest,
    classification: Classification,
    policy: Policy,
    candidates: list[RouteCandidate],
    healthy: int,
    wanted: str,
    budget_state: str,
    budget_calls: int | None = None,
) -> Plan:
    """`candidates` are in preference order with the `healthy` ones first. `budget_calls`: the billed
    calls a hard budget reserved for the task (None: no hard budget): a race of at most that many, and
    no race nor cascade when it covers one call only."""
    par, cas = policy.strategies.parallel, policy.strategies.cascade
    single = Plan(
        "single",
        candidates,
        "one candidate at a time, the rest as fallbacks",
        estimated_cost_usd=candidates[0].estimated_cost_usd,
    )
    if request.stream:
        return _why(single, "streamed: one answer at a time, so text is never taken back")
    if request.n > 1:
        return _why(single, f"{request.n} answers asked for: one call gives them all")
    money_ok = budget_state in ("unlimited", "ok")
    best_of = classification.type in par.best_of_types
    covered = 99 if budget_calls is None else budget_calls  # racers and steps the reservation pays for
    if covered < 2 and (par.enabled or cas.enabled):
        return _why(single, "the budget's reservation covers one call: no race, no cascade")
    racers = min(par.fan_out, healthy, covered)
    if par.enabled and money_ok and racers >= 2 and (best_of or classification.urgency >= par.urgency_above):
        n = racers
        mode: ParallelMode = "best_of" if best_of else "race"
        why = (
            f"{classification.type} is run best-of-{n}"
            if best_of
            else f"urgency {classification.urgency:.2f} >= {par.urgency_above}: race {n} to hedge latency"
        )
        cost = sum(c.estimated_cost_usd for c in candidates[:n])
        return Plan(
            "parallel", candidates, why, fan_out=n, parallel_mode=mode, estimated_cost_usd=round(cost, 8)
        )
    typed = not cas.types or classification.type in cas.types
    if cas.enabled and typed and wanted in cas.from_tiers:
        if classification.confidence < cas.min_confidence:
            return _why(
                single,
                f"classifier confidence {classification.confidence:.2f} < "
                f"{cas.min_confidence}: no cheap first step",
            )
        cheap = _cheapest_below(candidates[:healthy], wanted)
        rest = [c for c in candidates if c is not cheap]
        if cheap is not None and not rest:
            return _why(single, f"{cheap.model} is the only candidate: nothing to escalate to")
        if cheap is not None:
            cost = cheap.estimated_cost_usd + cas.escalation_prior * rest[0].estimated_cost_usd
            return Plan(
                "cascade",
                [cheap, *rest],
                f"{cheap.model} first; escalate to {rest[0].model} if a check fails",
                checks=list(cas.checks),
                min_confidence=cas.min_confidence,
                estimated_cost_usd=round(cost, 8),
            )
    return single


def _why(p: Plan, why: str) -> Plan:
    return Plan(p.strategy, p.candidates, why, estimated_cost_usd=p.estimated_cost_usd)


def _cheapest_below(candidates: list[RouteCandidate], wanted: str) -> RouteCandidate | None:
    cheaper = [c for c in candidates if c.tier != "local" and rank(c.tier) < rank(wanted)]
    return min(cheaper, key=lambda c: c.estimated_cost_usd, default=None)
