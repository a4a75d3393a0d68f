"""The ledger's `task.route` entry: the decision as it will run, strategy and why included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchyard.audit.entries import draft_for
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    RouteCandidate,
    RoutingDecision,
    TaskRouted,
    TaskSubmitted,
)

pytestmark = pytest.mark.unit


def _candidate(model: str, cost: float) -> RouteCandidate:
    provider, _, upstream = model.partition("/")
    return RouteCandidate(
        model=model, provider=provider, upstream_model=upstream, tier="standard", estimated_cost_usd=cost
    )


def test_a_race_is_recorded_with_its_fan_out_its_reason_and_the_cost_of_both_racers() -> None:
    """A parallel race runs (and bills) two calls: the entry's estimate is the decision's, not the first
    candidate's alone, and it says why the task was raced."""
    why = "urgency 0.95 >= 0.85: race 2 to hedge latency"
    decision = RoutingDecision(
        strategy="parallel",
        tier="standard",
        candidates=[_candidate("openai/gpt-6-sol", 0.002), _candidate("anthropic/claude-sonnet-5-5", 0.003)],
        policy_version="v",
        estimated_cost_usd=0.005,
        fan_out=2,
        reasons={"wanted_tier": "standard", "strategy_why": why},
    )
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        request=ChatRequest(messages=[ChatMessage(role="user", content="hi")]),
        submitted_at=datetime(2026, 12, 6, tzinfo=UTC),
    )
    cls = Classification(
        type="qa", confidence=0.9, complexity=0.5, urgency=0.95, model_version="t", latency_ms=1
    )
    routed = TaskRouted(task=task, classification=cls, decision=decision)
    event = CloudEvent(id="e1", source="switchyard/router", type=routed.EVENT_TYPE, data={})
    details = draft_for(event, routed).details
    assert details["strategy"] == "parallel" and details["fan_out"] == 2
    assert details["strategy_why"] == why and details["estimated_cost_usd"] == 0.005
