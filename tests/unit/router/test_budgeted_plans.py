"""A task under a hard budget is planned within the calls its reservation covers (`TaskBudget.calls`): a
race of no more racers, no race nor cascade when it covers one call (each of them billed)."""

from __future__ import annotations

import pytest

from switchyard.router.routing import decide
from tests.unit.router.test_decisions import ALL, POLICY, cls, req

pytestmark = pytest.mark.unit


def test_a_budget_covering_one_call_runs_one() -> None:
    urgent = decide(request=req(), classification=cls(0.5, urgency=0.95), policy=POLICY, available=ALL)
    assert urgent.strategy == "parallel"  # as it would be raced without a hard budget
    one = decide(
        request=req(), classification=cls(0.5, urgency=0.95), policy=POLICY, available=ALL, budget_calls=1
    )
    assert one.strategy == "single" and one.fan_out == 1
    assert one.reasons["strategy_why"] == "the budget's reservation covers one call: no race, no cascade"
    cascaded = decide(request=req(), classification=cls(0.5), policy=POLICY, available=ALL, budget_calls=1)
    assert cascaded.strategy == "single"


def test_a_race_runs_no_more_racers_than_the_budget_covers() -> None:
    wide = POLICY.model_copy(
        update={
            "strategies": POLICY.strategies.model_copy(
                update={"parallel": POLICY.strategies.parallel.model_copy(update={"fan_out": 3})}
            )
        }
    )
    three = decide(request=req(), classification=cls(0.5, urgency=0.95), policy=wide, available=ALL)
    two = decide(
        request=req(), classification=cls(0.5, urgency=0.95), policy=wide, available=ALL, budget_calls=2
    )
    assert (three.fan_out, two.fan_out) == (3, 2)
    assert two.estimated_cost_usd == pytest.approx(sum(c.estimated_cost_usd for c in two.candidates[:2]))
