"""Generated reasoning prompts and the temperature fit."""

from __future__ import annotations

import numpy as np
import pytest

from switchyard.classifier import puzzles
from switchyard.classifier.evaluation import confidence_calibration, fit_temperature

pytestmark = pytest.mark.unit


def test_puzzles_are_reproducible_varied_and_labeled_reasoning() -> None:
    a, b = puzzles.generate(140, seed=7), puzzles.generate(140, seed=7)
    assert [e.prompt for e in a] == [e.prompt for e in b]
    assert [e.prompt for e in a] != [e.prompt for e in puzzles.generate(140, seed=8)]
    assert {e.label for e in a} == {"reasoning"} and len({e.id for e in a}) == 140
    assert len({e.prompt for e in a}) > 130
    assert {e.native_label for e in a} == {f"puzzle/{g.__name__}" for g in puzzles.GENERATORS}


def test_temperature_fit_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 4000)
    true_logits = rng.standard_normal((4000, 3)) + np.eye(3)[y] * 1.5
    # labels drawn from softmax(true_logits): a model that outputs 3x those logits is overconfident
    p = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    t = fit_temperature(true_logits * 3, y)
    assert 2.4 < t < 3.6
    before = confidence_calibration(_softmax(true_logits * 3), y)["ece"]
    after = confidence_calibration(_softmax(true_logits * 3 / t), y)["ece"]
    assert after < before / 3


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]
