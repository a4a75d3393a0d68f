"""Validation folds of training data: where the recipe's choices (layer, token cap, mixing) are made.

The held-out split says how the heads do on sources they never saw, so nothing may be chosen on it. The
choices are made here instead, on folds cut from the *training* data the same way, by source:
- **A**: the calibration fold's four sources (`training.CALIBRATION_FOLD`);
- **B**: `t0_gigaword`, `t0_t0_gen`, MMLU formal logic and fallacies, and a third of the other MMLU
  subjects (subject hash mod 3 = 1);
- **M1** / **M2**: the multilingual requests written for the project, by language: each fold holds half
  of the languages, so a score says how the heads read a language they were not trained on.
For every fold and seed one MLP is trained (the run's type recipe) on the training split without the
fold, without the mixed-in rows built from the fold's documents, and scored by macro-F1 on the fold. A
fold's rows are scored whether or not the run trains on rows of their kind (M1 / M2 are read even when
the run mixes no multilingual requests in), so two runs' scores compare.

With `heldout=True` the held-out split is scored too, by the recipe's ensemble trained on the whole
training split: a guard (a variant the folds prefer must not be worse there), never a criterion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from switchyard.classifier import dataset, features, mixing, training
from switchyard.classifier.evaluation import classification_report
from switchyard.common.events.tasks import TASK_TYPES

FOLD_B_SOURCES = frozenset({"t0_gigaword", "t0_t0_gen"})
FOLD_B_MMLU = frozenset({"formal_logic", "logical_fallacies"})
# Each half holds one language of every script family that has two (Han: zh / ja, Cyrillic: ru / uk).
FOLD_M1_LANGUAGES = frozenset({"zh", "ru", "es", "de", "it", "vi", "ar"})


def _mmlu_third(ex: dataset.Example) -> bool:
    return int(hashlib.sha256(ex.native_label.encode()).hexdigest(), 16) % 3 == 1


def in_fold_b(ex: dataset.Example) -> bool:
    if ex.source in FOLD_B_SOURCES:
        return True
    return ex.source == training.OUTCOME_SOURCE and (ex.native_label in FOLD_B_MMLU or _mmlu_third(ex))


@dataclass(frozen=True, slots=True)
class Fold:
    name: str
    scored: np.ndarray  # rows scored
    excluded: np.ndarray  # rows kept out of training (the scored ones and what was built from them)


def folds(rows: list[dataset.Example], n_pool: int) -> list[Fold]:
    """The folds over `rows` = the pool's examples followed by the mixed-in and multilingual ones."""
    pool = rows[:n_pool]

    def from_pool(pred: Callable[[dataset.Example], bool]) -> np.ndarray:
        """The training split's rows of the fold (a held-out row is never scored here: personality_chat
        has held-out scenarios in the training source of fold A)."""
        return np.array([i < n_pool and pred(ex) and not dataset.is_heldout(ex) for i, ex in enumerate(rows)])

    def built_from(pred: Callable[[dataset.Example], bool]) -> np.ndarray:
        docs = {
            ex.prompt.split("\nContext:", 1)[1].strip()
            for ex in pool
            if pred(ex) and "\nContext:" in ex.prompt
        }
        return np.array(
            [
                bool(docs) and ex.source == mixing.AUGMENT_SOURCE and any(d in ex.prompt for d in docs)
                for ex in rows
            ]
        )

    def languages(first_half: bool) -> np.ndarray:
        return np.array(
            [
                ex.source == mixing.MULTILINGUAL_SOURCE
                and (ex.native_label in FOLD_M1_LANGUAGES) == first_half
                for ex in rows
            ]
        )

    def fold_a(ex: dataset.Example) -> bool:
        return ex.source in training.CALIBRATION_FOLD

    out = []
    for name, pred in (("A", fold_a), ("B", in_fold_b)):
        scored = from_pool(pred)
        out.append(Fold(name, scored, scored | built_from(pred)))
    for name, first in (("M1", True), ("M2", False)):
        scored = languages(first)
        out.append(Fold(name, scored, scored))
    return out


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean F1 over the labels present in `y` (evaluation.classification_report's)."""
    return float(classification_report(y, pred, TASK_TYPES)["macro_f1"])


def _fit(
    x: np.ndarray,
    labels: np.ndarray,
    rows: list[dataset.Example],
    train: np.ndarray,
    run: training.TrainingRun,
    rng: np.random.Generator,
    ensemble: int,
) -> Callable[[np.ndarray], np.ndarray]:
    picked = np.flatnonzero(train)
    weights = training.type_weights(
        [rows[i].label for i in picked], [training.weight_source(rows[i], run) for i in picked]
    )
    mean, std, head = training.fit_type_head(x[train], labels[train], weights, run, rng, ensemble)
    return lambda xs: head((xs - mean) / std)


def score(
    rows: list[dataset.Example],
    vectors: np.ndarray,
    *,
    n_pool: int,
    trained: np.ndarray,
    run: training.TrainingRun,
    seeds: tuple[int, ...],
    heldout: bool = False,
) -> dict[str, Any]:
    """Macro-F1 per fold and seed. `trained` marks the rows the run may train on (the pool's training
    split and its mixed-in rows); the folds take their rows out of it."""
    x = np.concatenate([vectors, features.lexical_matrix([ex.prompt for ex in rows])], axis=1)
    x = x.astype(np.float32)
    label_index = {label: i for i, label in enumerate(TASK_TYPES)}
    labels = np.array([label_index[ex.label] for ex in rows], dtype=np.int64)
    out: dict[str, Any] = {"seeds": list(seeds), "folds": {}}
    means: dict[str, float] = {}
    for fold in folds(rows, n_pool):
        if not fold.scored.any():
            continue
        per_seed = []
        for seed in seeds:
            model = _fit(x, labels, rows, trained & ~fold.excluded, run, np.random.default_rng(seed), 1)
            per_seed.append(round(macro_f1(labels[fold.scored], model(x[fold.scored]).argmax(axis=1)), 4))
        means[fold.name] = float(np.mean(per_seed))
        out["folds"][fold.name] = {
            "n": int(fold.scored.sum()),
            "f1": per_seed,
            "mean": round(means[fold.name], 4),
        }
    for summary, names in (("validation", ("A", "B")), ("multilingual", ("M1", "M2"))):
        present = [means[n] for n in names if n in means]
        out[summary] = round(float(np.mean(present)), 4) if present else None
    if heldout:
        held = np.array([i < n_pool and dataset.is_heldout(ex) for i, ex in enumerate(rows)])
        model = _fit(x, labels, rows, trained, run, np.random.default_rng(run.seed), run.ensemble)
        out["heldout"] = round(macro_f1(labels[held], model(x[held]).argmax(axis=1)), 4)
    return out
