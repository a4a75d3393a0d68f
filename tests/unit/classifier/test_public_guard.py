"""A head the ledger holdout promotes must keep its macro-F1 on the public held-out split, within a margin."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from switchyard.classifier.heads import Heads, Mlp
from switchyard.classifier.outcomes import guard
from switchyard.classifier.outcomes.retrain import Decision
from switchyard.common.events.tasks import TASK_TYPES

pytestmark = pytest.mark.unit
DIM = 6


def heads(version: str, w: np.ndarray) -> Heads:
    comp = Mlp((np.zeros((DIM, 1), np.float32),), (np.zeros(1, np.float32),))
    return Heads(
        version, TASK_TYPES, np.zeros(DIM, np.float32), np.ones(DIM, np.float32),
        Mlp((w.astype(np.float32),), (np.zeros(len(TASK_TYPES), np.float32),)), comp,
    )  # fmt: skip


@pytest.fixture
def held() -> guard.HeldOut:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, DIM)).astype(np.float32)
    y = np.where(x[:, 0] > 0, TASK_TYPES.index("math"), TASK_TYPES.index("coding"))
    return guard.HeldOut(x, y.astype(np.int64), np.zeros(300, dtype=bool))


def rule(strength: float) -> np.ndarray:
    """A head that reads x0 as math (> 0) or coding, `strength` of the way (0: a constant guess)."""
    w = np.zeros((DIM, len(TASK_TYPES)))
    w[0, TASK_TYPES.index("math")] = strength
    w[0, TASK_TYPES.index("coding")] = -strength
    return w


def test_a_head_that_loses_on_the_public_split_is_not_promoted(held: guard.HeldOut) -> None:
    current, worse = heads("heads-4", rule(1.0)), heads("heads-5", rule(0.0))
    decision = guard.check(
        Decision(True, worse, ["type head promoted: holdout macro-F1 0.5 -> 0.9"]), current, held
    )
    assert not decision.promoted and decision.heads is current
    numbers = decision.report["public_heldout"]
    assert numbers["current"] == 1.0 and numbers["candidate"] < 0.5 and numbers["n"] == 300
    assert decision.reasons[-1].startswith("not promoted: public held-out macro-F1 1.0 -> ")
    assert decision.reasons[-1].endswith("more than 0.01 lower: current heads kept")


def test_a_head_within_the_margin_is_promoted_and_the_numbers_are_reported(held: guard.HeldOut) -> None:
    current = heads("heads-4", rule(1.0))
    noisy = rule(1.0)
    noisy[1, TASK_TYPES.index("math")] = 0.02  # a hair different: a few rows near the boundary move
    candidate = heads("heads-5", noisy)
    decision = guard.check(Decision(True, candidate, ["promoted"], {"rows": 9}), current, held, max_drop=0.05)
    assert decision.promoted and decision.heads is candidate and decision.report["rows"] == 9
    assert decision.report["public_heldout"]["max_drop"] == 0.05
    assert decision.reasons[-1].startswith("public held-out macro-F1 1.0 -> ")
    # the same loss against a margin of 0: refused
    strict = guard.check(Decision(True, candidate, ["promoted"]), current, held, max_drop=0.0)
    assert strict.promoted == (strict.report["public_heldout"]["candidate"] >= 1.0)


def test_a_decision_that_keeps_the_heads_is_left_alone(held: guard.HeldOut) -> None:
    current = heads("heads-4", rule(1.0))
    kept = Decision(False, current, ["type head kept: ..."])
    assert guard.check(kept, current, held) is kept
    assert guard.check(replace(kept, promoted=True, heads=current), current, held).promoted
