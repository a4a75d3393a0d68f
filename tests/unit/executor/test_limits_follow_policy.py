"""The executor's rpm/tpm limits follow the policy file: a changed limit applies from the next call, a
model removed (or no longer limited) is not limited, and the buckets of unchanged limits keep their
state (an exhausted limit is not refilled by an edit elsewhere in the file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from switchyard.executor.app import State, followed_policy, limits_from
from switchyard.executor.config import ExecutorSettings
from switchyard.executor.resilience.limits import Limit, LocalRateLimits
from tests.support.prices import PRICE_SHEET
from tests.unit.executor.test_limits import Clock

pytestmark = pytest.mark.unit


async def _granted(limits: LocalRateLimits, key: str, calls: int, tokens: int = 1) -> int:
    return sum([await limits.try_acquire(key, tokens=tokens) for _ in range(calls)])


async def test_a_new_table_keeps_unchanged_buckets_clips_changed_ones_and_drops_removed_ones() -> None:
    clock = Clock()
    limits = LocalRateLimits(
        {
            "same": Limit(rpm=10),
            "lowered": Limit(rpm=10, tpm=1000),
            "raised": Limit(rpm=6),
            "gone": Limit(rpm=2),
        },
        clock=clock,
    )
    assert await _granted(limits, "same", 12) == 10
    assert await _granted(limits, "lowered", 5, tokens=100) == 5  # 5 requests and 500 tokens left
    assert await _granted(limits, "raised", 7) == 6
    assert await _granted(limits, "gone", 3) == 2

    limits.set_limits({"same": Limit(rpm=10), "lowered": Limit(rpm=3, tpm=1000), "raised": Limit(rpm=60)})
    assert await _granted(limits, "same", 1) == 0  # still spent: the edit gave it nothing back
    assert await _granted(limits, "lowered", 5, tokens=100) == 3  # 5 left, clipped to the new 3
    assert await _granted(limits, "raised", 1) == 0  # a raised limit is no fresh allowance...
    clock.now += 1.0
    assert await _granted(limits, "raised", 2) == 1  # ...it refills at its new rate: one a second
    assert await _granted(limits, "gone", 50) == 50  # no longer limited
    assert await _granted(limits, "same", 1) == 0  # a second not enough for 10 rpm's next call

    limits.set_limits({"gone": Limit(rpm=1)})  # limited again: a fresh bucket
    assert await _granted(limits, "gone", 3) == 1


async def test_the_executor_follows_the_rpm_and_tpm_of_the_policy_file(tmp_path: Path) -> None:
    """Through the executor's own wiring (`followed_policy`): the price sheet limits gpt-4o-mini to 5,000
    rpm, o3 to 500 rpm and gpt-4o to 800,000 tpm."""
    sheet = yaml.safe_load(PRICE_SHEET.read_text())
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(sheet))
    settings = ExecutorSettings(
        policy_path=path, shared_state=False, policy_settle_s=0, provider_limits={"openai": Limit(rpm=10**6)}
    )
    clock = Clock()
    state = State(breakers=None, limits=None)
    policies = followed_policy(settings, state)
    limits = LocalRateLimits(limits_from(settings, policies.current()), clock=clock)
    state.limits = limits
    assert await _granted(limits, "openai/o3", 501) == 500
    assert await _granted(limits, "openai/gpt-4o", 2, tokens=500_000) == 1

    for model in sheet["models"]:
        if model["id"] == "openai/gpt-4o-mini":
            model["rpm"] = 2
        if model["id"] == "openai/gpt-4o":
            del model["tpm"]
    sheet["version"] = "limits changed"
    path.write_text(yaml.safe_dump(sheet))
    assert policies.reload_if_changed()  # what the watch does every SWITCHYARD_POLICY_CHECK_S

    assert await _granted(limits, "openai/gpt-4o-mini", 3) == 2
    assert await _granted(limits, "openai/gpt-4o", 2, tokens=500_000) == 2  # its tpm is gone
    assert await _granted(limits, "openai/o3", 1) == 0  # unchanged: still spent
    assert await _granted(limits, "openai", 1) == 1  # the settings' provider limit stays

    path.write_text("version: broken\nmodels: []\n")  # an edit that does not load changes nothing
    assert not policies.reload_if_changed()
    assert await _granted(limits, "openai/gpt-4o-mini", 1) == 0
