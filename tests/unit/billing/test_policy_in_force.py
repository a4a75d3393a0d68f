"""Billing prices each charge by the policy in force when it is made (a `PolicySource` that re-reads the
file), and each entry, and the event announcing it, names the version of the policy that priced it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from switchyard.billing.pricing import POLICY_VERSION_CHARS, price
from switchyard.billing.service import new_entry, usage_event
from switchyard.common.events import TaskCompleted, Usage
from switchyard.common.policy_source import PolicySource
from tests.support.prices import price_sheet, write_price_sheet

pytestmark = pytest.mark.unit
MINI = "openai/gpt-4o-mini"  # 0.00015 per 1K input, 0.0006 per 1K output on the price sheet
NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _done(task_id: str) -> TaskCompleted:
    return TaskCompleted(
        task_id=task_id,
        tenant_id="acme",
        model=MINI,
        provider="openai",
        tier="fast",
        content="ok",
        finish_reason="stop",
        usage=Usage(prompt_tokens=2000, completion_tokens=1000),
        attempts=1,
        latency_ms=1.0,
        completed_at=NOW,
    )


def test_a_price_changed_between_two_charges_prices_each_by_the_policy_in_force(tmp_path: Path) -> None:
    path = write_price_sheet(tmp_path / "policy.yaml", version="2026-12-06.1")
    clock = Clock()
    policies = PolicySource(path, check_s=1.0, clock=clock)
    first = new_entry(event_id="e1", completed=_done("t1"), policy=policies.current(), now=NOW)

    write_price_sheet(path, version="2026-12-06.2", prices={MINI: 0.0012})  # output price doubled
    unseen = new_entry(event_id="e2", completed=_done("t2"), policy=policies.current(), now=NOW)
    clock.now += 1.0  # the next check finds the new file
    second = new_entry(event_id="e3", completed=_done("t3"), policy=policies.current(), now=NOW)

    # 2,000 x 0.00015/1K + 1,000 x 0.0006/1K, then x 0.0012/1K for the output
    assert (first.cost_usd, first.policy_version) == (Decimal("0.0009000000"), "2026-12-06.1")
    assert (unseen.cost_usd, unseen.policy_version) == (Decimal("0.0009000000"), "2026-12-06.1")
    assert (second.cost_usd, second.policy_version) == (Decimal("0.0015000000"), "2026-12-06.2")
    assert usage_event(second).policy_version == "2026-12-06.2"
    assert usage_event(second).cost_usd == pytest.approx(0.0015)


def test_an_unpriced_charge_still_names_the_policy_and_a_long_version_is_cut_to_the_column() -> None:
    sheet = price_sheet()
    got = price(policy=sheet, model="openai/not-listed", prompt_tokens=10, completion_tokens=1)
    assert (got.priced, got.policy_version) == (False, "test-price-sheet")
    long = sheet.model_copy(update={"version": "v" * 300})
    assert price(policy=long, model=MINI, prompt_tokens=1, completion_tokens=1).policy_version == (
        "v" * POLICY_VERSION_CHARS
    )
