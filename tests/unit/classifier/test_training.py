from __future__ import annotations

import numpy as np
import pytest

from switchyard.classifier.dataset import Example
from switchyard.classifier.evaluation import calibration, classification_report
from switchyard.classifier.mlp_train import TrainConfig, average_of, train_mlp
from switchyard.classifier.training import (
    OUTCOME_SOURCE,
    complexity_role,
    is_complexity_heldout,
    type_weights,
)

pytestmark = pytest.mark.unit


def _blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 600)
    x = rng.standard_normal((600, 8)).astype(np.float32) + np.eye(3, 8, dtype=np.float32)[y] * 3
    return x, y


def test_training_is_reproducible_and_learns() -> None:
    x, y = _blobs(0)
    config = TrainConfig(hidden=(16,), epochs=30, batch_size=32, lr=3e-3)
    a = train_mlp(x, y, weights=np.ones(len(y)), outputs=3, config=config, rng=np.random.default_rng(1))
    b = train_mlp(x, y, weights=np.ones(len(y)), outputs=3, config=config, rng=np.random.default_rng(1))
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        assert np.array_equal(wa, wb)
    assert (a(x).argmax(1) == y).mean() > 0.9


def test_every_label_weighs_the_same_and_sources_share_it() -> None:
    w = type_weights(["math"] * 90 + ["math"] * 10 + ["qa"] * 5, ["gsm"] * 90 + ["mmlu"] * 10 + ["cbqa"] * 5)
    assert w[:90].sum() == pytest.approx(w[90:100].sum())
    assert w[:100].sum() == pytest.approx(w[100:].sum())


def test_report_counts_per_class() -> None:
    r = classification_report(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ("a", "b", "c"))
    assert r["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(0.6667), "support": 2}
    assert r["confusion"][0] == [1, 1, 0] and r["macro_f1"] == pytest.approx(0.7333, abs=1e-4)


def test_calibration_of_perfect_and_constant_predictions() -> None:
    outcome = np.array([0, 1] * 50)
    assert calibration(outcome.astype(float), outcome)["ece"] == 0
    c = calibration(np.full(100, 0.5), outcome)
    assert c["ece"] == 0 and c["brier"] == 0.25


def test_an_averaged_ensemble_folds_into_one_equal_mlp() -> None:
    x, y = _blobs(2)
    config = TrainConfig(hidden=(8,), epochs=2)
    rng = np.random.default_rng(3)
    mlps = [train_mlp(x, y, weights=np.ones(len(y)), outputs=3, config=config, rng=rng) for _ in range(3)]
    folded = average_of(mlps)
    assert np.allclose(folded(x), np.mean([m(x) for m in mlps], axis=0), atol=1e-5)


def _mmlu(subject: str, weak: int, strong: int) -> Example:
    return Example(
        id=f"{subject}-{weak}-{strong}",
        source=OUTCOME_SOURCE,
        prompt="q",
        label="qa",
        native_label=subject,
        weak_correct=bool(weak),
        strong_correct=bool(strong),
    )


def test_mmlu_subjects_split_into_disjoint_roles_by_subject() -> None:
    subjects = [f"subject_{i}" for i in range(200)]
    roles = {s: complexity_role(_mmlu(s, 1, 1)) for s in subjects}
    assert set(roles.values()) == {"heldout", "train"}
    assert 0.1 < sum(r == "heldout" for r in roles.values()) / 200 < 0.3
    assert all(complexity_role(_mmlu(s, 0, 1)) == roles[s] for s in subjects)  # by subject only
    assert all(is_complexity_heldout(_mmlu(s, 1, 1)) == (roles[s] == "heldout") for s in subjects)
    other = Example(id="g", source="gsm8k_train", prompt="x", label="math", native_label="subject_0")
    assert complexity_role(other) is None
