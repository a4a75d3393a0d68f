"""The validation folds: cut from training data by source (and language), never from the held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from switchyard.classifier import folds, mixing, training
from switchyard.classifier.dataset import Example, is_heldout
from switchyard.common.events.tasks import TASK_TYPES

pytestmark = pytest.mark.unit

DOC = "The river flooded the old mill in 1903 and the town rebuilt it two years later with stone walls."


def _ex(i: int, source: str, label: str, native: str = "", prompt: str = "") -> Example:
    return Example(id=f"{source}:{i}", source=source, prompt=prompt or f"{source} {label} {i}", label=label,
                   native_label=native)  # fmt: skip


def test_each_fold_takes_its_rows_and_what_was_built_from_them_out_of_training() -> None:
    pool = [
        _ex(0, "gsm8k_train", "math"),  # fold A (calibration fold)
        _ex(1, "t0_cnn_dailymail", "summarisation", prompt=f"Summarise.\nContext: {DOC}"),  # fold A
        _ex(2, "t0_gigaword", "summarisation"),  # fold B
        _ex(3, "mmlu_routellm", "reasoning", native="formal_logic"),  # fold B
        _ex(4, "mbpp_plus", "coding"),  # fold A
        _ex(5, "t0_advqa", "extraction"),  # in no fold
        _ex(6, "bbh", "reasoning"),  # held out: in no fold
    ]
    extra = [
        _ex(10, mixing.AUGMENT_SOURCE, "extraction", prompt=f"List the years.\n\n{DOC}"),  # built from row 1
        _ex(11, mixing.AUGMENT_SOURCE, "writing", prompt="Write a poem.\n\nSomething else entirely."),
        _ex(12, mixing.MULTILINGUAL_SOURCE, "math", native="zh"),  # M1
        _ex(13, mixing.MULTILINGUAL_SOURCE, "math", native="ja"),  # M2
        _ex(14, mixing.MULTILINGUAL_SOURCE, "qa", native="ru"),  # M1
    ]
    rows = pool + extra
    by_name = {f.name: f for f in folds.folds(rows, len(pool))}
    assert set(by_name) == {"A", "B", "M1", "M2"}
    assert np.flatnonzero(by_name["A"].scored).tolist() == [0, 1, 4]
    assert np.flatnonzero(by_name["A"].excluded).tolist() == [0, 1, 4, 7]
    assert np.flatnonzero(by_name["B"].scored).tolist() == [2, 3]
    assert np.flatnonzero(by_name["B"].excluded).tolist() == [2, 3]
    assert np.flatnonzero(by_name["M1"].scored).tolist() == [9, 11]
    assert np.flatnonzero(by_name["M2"].scored).tolist() == [10]
    for fold in by_name.values():
        assert not any(is_heldout(rows[i]) for i in np.flatnonzero(fold.scored))


def test_mmlu_subjects_of_fold_b_are_a_third_by_subject_hash_plus_the_logic_ones() -> None:
    subjects = [f"subject_{i}" for i in range(300)]
    chosen = [s for s in subjects if folds.in_fold_b(_ex(0, training.OUTCOME_SOURCE, "qa", native=s))]
    assert 70 < len(chosen) < 130
    assert folds.in_fold_b(_ex(0, training.OUTCOME_SOURCE, "reasoning", native="logical_fallacies"))
    assert not folds.in_fold_b(_ex(0, "gsm8k_train", "math", native=chosen[0]))


def test_the_languages_split_every_two_language_script_family_across_the_halves() -> None:
    assert ("zh" in folds.FOLD_M1_LANGUAGES) != ("ja" in folds.FOLD_M1_LANGUAGES)
    assert ("ru" in folds.FOLD_M1_LANGUAGES) != ("uk" in folds.FOLD_M1_LANGUAGES)


def test_macro_f1_counts_only_the_labels_present() -> None:
    y = np.array([0, 0, 1, 1])
    assert folds.macro_f1(y, y) == 1.0
    assert folds.macro_f1(y, np.array([0, 0, 0, 0])) == 0.3333  # (2/3 + 0) / 2, to four places
    assert folds.macro_f1(y, np.array([1, 1, 0, 0])) == 0.0


def test_scores_say_how_a_recipe_reads_a_fold_it_did_not_train_on() -> None:
    """Separable inputs (the same prompt text everywhere, so only the vectors tell the labels apart): the
    fold is scored by a model that never saw it, and the guard is reported."""
    rng = np.random.default_rng(0)
    sources = {"math": ["gsm8k_train", "mmlu_routellm"], "coding": ["mbpp_plus", "switchyard_seed"],
               "summarisation": ["t0_cnn_dailymail", "t0_gigaword"]}  # fmt: skip
    rows: list[Example] = []
    for label, srcs in sources.items():
        for source in srcs:
            rows += [_ex(len(rows), source, label, "algebra", "please help") for _ in range(40)]
    rows += [_ex(len(rows), "t0_xsum", "summarisation", "", "please help") for _ in range(20)]  # held out
    centre = {label: rng.normal(size=8) * 4 for label in TASK_TYPES}
    vectors = np.stack([centre[ex.label] + rng.normal(size=8) for ex in rows]).astype(np.float32)
    trained = np.array([not is_heldout(ex) for ex in rows])
    run = training.TrainingRun(ensemble=2)
    result = folds.score(
        rows, vectors, n_pool=len(rows), trained=trained, run=run, seeds=(1, 2), heldout=True
    )
    assert result["folds"]["A"]["n"] == 120 and len(result["folds"]["A"]["f1"]) == 2
    assert result["folds"]["A"]["mean"] > 0.9 and result["heldout"] == 1.0
    assert result["multilingual"] is None  # no multilingual rows: no M folds

    # the same rows with the labels' inputs shuffled: nothing to learn, and the score says so
    shuffled = vectors[rng.permutation(len(rows))]
    worse = folds.score(rows, shuffled, n_pool=len(rows), trained=trained, run=run, seeds=(1,))
    assert worse["folds"]["A"]["mean"] < 0.6
