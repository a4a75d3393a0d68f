"""Outcomes from ledger entries, the dataset join, and the promotion gate of retraining."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from switchyard.classifier import features
from switchyard.classifier.heads import Heads, Mlp, ScriptHead
from switchyard.classifier.outcomes import retrain
from switchyard.classifier.outcomes.ledger import LedgerRecord, outcomes
from switchyard.classifier.outcomes.store import Consent, StoredFeatures
from switchyard.common.events.tasks import TASK_TYPES

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _rec(seq: int, tenant: str, action: str, **details: Any) -> LedgerRecord:
    return LedgerRecord(seq, T0 + timedelta(minutes=seq), tenant, action, details)


def test_outcomes_join_by_tenant_and_task_and_read_failures_and_feedback() -> None:
    found = outcomes(
        [
            _rec(1, "acme", "task.classify", task_id="a", type="qa", model_version="h1"),
            _rec(2, "acme", "task.classify", task_id="b", type="math", model_version="h1"),
            _rec(3, "acme", "task.classify", task_id="c", type="coding", model_version="h1"),
            _rec(4, "acme", "task.complete", task_id="a", attempts=1),
            _rec(5, "acme", "task.feedback", task_id="a", rating="good"),
            _rec(6, "evil", "task.feedback", task_id="a", rating="bad", task_type="chitchat"),
            _rec(7, "acme", "provider.call", task_id="b"),
            _rec(8, "acme", "provider.call", task_id="b"),
            _rec(9, "acme", "task.complete", task_id="b", attempts=2),
            _rec(
                10,
                "acme",
                "task.feedback",
                task_id="b",
                rating="bad",
                task_type="reasoning",
                reason="wrong_type",
            ),
            _rec(11, "acme", "task.fail", task_id="c"),
        ]
    )
    by_id = {o.task_id: o for o in found}
    assert [o.task_id for o in found] == ["a", "b", "c"]
    assert (
        by_id["a"].type_label == "qa" and by_id["a"].cheap_failed is False
    )  # another tenant's feedback ignored
    assert by_id["b"].type_label == "reasoning" and by_id["b"].cheap_failed is True  # escalated
    assert by_id["c"].type_label is None and by_id["c"].cheap_failed is True


def test_tasks_ended_by_no_doing_of_the_model_are_no_evidence_against_it() -> None:
    """A race's loser (cancelled) is not an escalation; a task cancelled by its client, ended by its
    executor's stop, or whose call its client's short wait cut, says nothing of whether the cheap model
    could do it, nor does one its provider's key, capacity or the routing failed; a timeout or a garbled
    answer still does."""
    names = (
        "race",
        "cancelled",
        "stopping",
        "short",
        "broken",
        "key",
        "busy",
        "unroutable",
        "garbled",
        "queued",
        "credit",
    )
    classify = [
        _rec(n, "acme", "task.classify", task_id=t, type="qa", model_version="h1")
        for n, t in enumerate(names, start=1)
    ]
    found = outcomes(
        [
            *classify,
            _rec(10, "acme", "provider.call", task_id="race", result="ok"),
            _rec(11, "acme", "provider.call", task_id="race", result="cancelled"),
            _rec(12, "acme", "task.complete", task_id="race", attempts=1),
            _rec(13, "acme", "task.fail", task_id="cancelled", error_code="task_cancelled"),
            _rec(14, "acme", "task.fail", task_id="stopping", error_code="executor_stopping"),
            _rec(15, "acme", "provider.call", task_id="short", result="cut_short"),
            _rec(16, "acme", "task.fail", task_id="short", error_code="provider_timeout"),
            _rec(17, "acme", "provider.call", task_id="broken", result="timeout"),
            _rec(18, "acme", "task.fail", task_id="broken", error_code="provider_timeout"),
            _rec(19, "acme", "task.fail", task_id="key", error_code="provider_auth"),
            _rec(20, "acme", "task.fail", task_id="busy", error_code="provider_circuit_open"),
            _rec(21, "acme", "task.fail", task_id="unroutable", error_code="no_provider_available"),
            _rec(22, "acme", "task.fail", task_id="garbled", error_code="provider_bad_response"),
            _rec(23, "acme", "task.fail", task_id="queued", error_code="task_expired"),
            _rec(24, "acme", "task.fail", task_id="credit", error_code="provider_quota_exhausted"),
        ]
    )
    assert {o.task_id: o.cheap_failed for o in found} == {
        "race": False,
        "cancelled": None,
        "stopping": None,
        "short": None,
        "broken": True,
        "key": None,
        "busy": None,
        "unroutable": None,
        "garbled": True,
        "queued": None,
        "credit": None,  # the provider account out of credit
    }


def test_consent_is_opt_in() -> None:
    assert not Consent(frozenset()).covers("acme")
    assert Consent(frozenset({"acme"})).covers("acme") and not Consent(frozenset({"acme"})).covers("other")
    assert Consent(frozenset({"*"})).covers("anyone")


def _type_mlp(dim: int, rng: np.random.Generator) -> Mlp:
    w0 = rng.standard_normal((dim, 16)).astype(np.float32)
    w1 = rng.standard_normal((16, 9)).astype(np.float32) * 0.1
    return Mlp((w0, w1), (np.zeros(16, np.float32), np.zeros(9, np.float32)))


def _heads(dim: int, rng: np.random.Generator) -> Heads:
    type_head = _type_mlp(dim, rng)
    comp = Mlp((np.zeros((dim, 1), np.float32),), (np.zeros(1, np.float32),))
    return Heads("heads-4", TASK_TYPES, np.zeros(dim, np.float32), np.ones(dim, np.float32), type_head, comp)


def _data(
    labels: list[str],
    x: np.ndarray,
    other_language: np.ndarray | None = None,
    *,
    tenants: list[str] | None = None,
    completed: bool = False,
) -> retrain.OutcomeData:
    found, stored = [], {}
    for i, label in enumerate(labels):
        org = tenants[i] if tenants else "acme"
        found.append(
            outcomes([_rec(i, org, "task.classify", task_id=f"t{i}", type=label, model_version="h")])[0]
        )
        found[-1].rating, found[-1].completed = "good", completed
        flag = bool(other_language[i]) if other_language is not None else False
        stored[(org, f"t{i}")] = StoredFeatures(org, f"t{i}", x[i], T0, other_language=flag)
    return retrain.dataset(found, stored, TASK_TYPES)


def test_a_candidate_that_cannot_beat_the_current_heads_is_not_promoted() -> None:
    rng = np.random.default_rng(0)
    heads = _heads(8, rng)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    # users confirmed exactly what the current heads predict: nothing to gain
    current = [TASK_TYPES[int(i)] for i in heads.type_head(x).argmax(axis=1)]
    decision = retrain.retrain(heads, _data(current, x), holdout=0.2)
    assert not decision.promoted and decision.heads is heads
    assert any("type head kept" in r for r in decision.reasons)
    assert decision.report["type"]["current"]["accuracy"] == 1.0


def test_a_candidate_that_learns_the_users_labels_is_promoted_with_a_new_version() -> None:
    rng = np.random.default_rng(1)
    heads = _heads(8, rng)
    x = rng.standard_normal((120, 8)).astype(np.float32)
    labels = ["math" if v > 0 else "coding" for v in x[:, 0]]  # a rule the current heads do not know
    decision = retrain.retrain(heads, _data(labels, x), holdout=0.25)
    assert decision.promoted, decision.reasons
    assert decision.heads.version == "heads-5"
    t = decision.report["type"]
    assert t["candidate"]["macro_f1"] > t["current"]["macro_f1"]
    assert decision.report["holdout_rows"] == 30 and decision.report["train_rows"] == 90


def test_too_few_outcomes_keep_the_current_heads() -> None:
    rng = np.random.default_rng(2)
    heads = _heads(8, rng)
    decision = retrain.retrain(heads, _data(["qa"] * 5, rng.standard_normal((5, 8)).astype(np.float32)))
    assert not decision.promoted and "need 20" in decision.reasons[0]
    assert retrain.next_version("heads-1") == "heads-2" and retrain.next_version("custom") == "custom-2"


def test_each_type_head_learns_from_and_is_judged_on_the_prompts_it_reads() -> None:
    rng = np.random.default_rng(3)
    dim = 4 + features.DIM  # the embedding part, then the lexical features (no non-ASCII text here)
    base = _heads(dim, rng)
    second = ScriptHead(
        mean=np.zeros(dim, np.float32), std=np.ones(dim, np.float32), type_head=_type_mlp(dim, rng),
        temperature=1.0, min_non_ascii=0.3, other_languages=True,
    )  # fmt: skip
    heads = replace(base, other_scripts=second)
    x = rng.standard_normal((160, dim)).astype(np.float32)
    x[:, -features.DIM :] = 0.0
    spanish = np.arange(160) % 2 == 1
    # the English prompts' users agree with the main head; the Spanish ones follow a rule neither knows
    main_says = [TASK_TYPES[int(i)] for i in base.type_head(x).argmax(axis=1)]
    labels = [("math" if x[i, 0] > 0 else "coding") if spanish[i] else main_says[i] for i in range(160)]
    decision = retrain.retrain(heads, _data(labels, x, spanish), holdout=0.25)
    assert decision.promoted, decision.reasons
    assert decision.heads.type_head is base.type_head  # the Spanish rows never reached the main head
    assert decision.heads.other_scripts is not None
    assert decision.heads.other_scripts.type_head is not second.type_head
    main, other = decision.report["type"], decision.report["type_other_scripts"]
    assert main["current"]["accuracy"] == 1.0 and main["current"]["n"] == 20 and main["train_rows"] == 60
    assert other["candidate"]["macro_f1"] > other["current"]["macro_f1"] and other["train_rows"] == 60
    assert any(r.startswith("other-scripts type head promoted") for r in decision.reasons)


def test_the_data_hash_covers_which_head_each_row_trains() -> None:
    x = np.random.default_rng(4).standard_normal((4, 8)).astype(np.float32)
    labels = ["qa", "math", "qa", "coding"]
    english = _data(labels, x, np.zeros(4, dtype=bool))
    assert english.sha256() == _data(labels, x, np.zeros(4, dtype=bool)).sha256()
    assert english.sha256() != _data(labels, x, np.array([False, True, False, False])).sha256()


def test_embedding_tasks_are_not_outcomes_to_learn_from() -> None:
    """An embedding task is classified `embedding` without the encoder: there is no prediction to judge,
    so its results and feedback make no training row."""
    found = outcomes(
        [
            _rec(1, "acme", "task.classify", task_id="e", type="embedding", model_version="passthrough"),
            _rec(2, "acme", "task.classify", task_id="q", type="qa", model_version="h1"),
            _rec(3, "acme", "task.fail", task_id="e"),
            _rec(4, "acme", "task.feedback", task_id="e", rating="good"),
            _rec(5, "acme", "task.complete", task_id="q", attempts=1),
        ]
    )
    assert [o.task_id for o in found] == ["q"]


def test_a_holdout_too_small_to_tell_the_heads_apart_promotes_nothing() -> None:
    """One more row right out of four is noise, not a better head: a head is promoted only when the
    rows it fixes outnumber the rows it breaks beyond chance (exact McNemar test, one-sided 5 %)."""
    rng = np.random.default_rng(1)
    heads = _heads(8, rng)
    x = rng.standard_normal((20, 8)).astype(np.float32)
    labels = ["math" if v > 0 else "coding" for v in x[:, 0]]
    decision = retrain.retrain(heads, _data(labels, x), holdout=0.2)
    t = decision.report["type"]
    assert t["candidate"]["macro_f1"] > t["current"]["macro_f1"]  # better by one row of four
    assert not decision.promoted and decision.heads is heads
    assert t["fixed"] - t["broken"] == 1 and t["p_value"] > 0.05
    assert any("type head kept: holdout too small to decide" in r for r in decision.reasons), decision.reasons


def test_better_beyond_chance_is_a_one_sided_paired_test() -> None:
    assert retrain.mcnemar_p(5, 0) == pytest.approx(0.03125)  # five fixed, none broken: 1 / 2**5
    assert retrain.mcnemar_p(4, 0) == pytest.approx(0.0625)
    assert retrain.mcnemar_p(0, 0) == 1.0 and retrain.mcnemar_p(3, 3) > 0.5
    # the complexity head's Brier terms: four better rows are chance, twelve are not
    flips = retrain.sign_flip_p
    assert flips(np.ones(4), np.random.default_rng(0)) > retrain.MAX_P
    assert flips(np.ones(12), np.random.default_rng(0)) < retrain.MAX_P
    assert flips(np.array([1.0, -1.0]), np.random.default_rng(0)) == 1.0


def test_outcomes_that_all_ended_alike_cannot_judge_the_complexity_head() -> None:
    """Every task answered at the first try (make run's local model, no cascade): a candidate that learns
    "nothing ever fails" wins on Brier there but has nothing left to rank tasks by (AUC undefined)."""
    rng = np.random.default_rng(5)
    heads = _heads(8, rng)
    heads = replace(heads, complexity_head=Mlp((np.zeros((8, 1), np.float32),), (np.ones(1, np.float32),)))
    x = rng.standard_normal((100, 8)).astype(np.float32)
    current = [TASK_TYPES[int(i)] for i in heads.type_head(x).argmax(axis=1)]
    decision = retrain.retrain(heads, _data(current, x, completed=True), holdout=0.2)
    assert not decision.promoted, decision.reasons
    assert any(r.startswith("complexity head kept: every") for r in decision.reasons), decision.reasons


def test_one_organisation_flooding_labels_cannot_promote_a_head_that_is_worse_for_another() -> None:
    """`evil` sends seven tasks to acme's one, labelled by its own rule; acme's users agree with the
    current head. The candidate wins on the holdout by evil's rows: refused, since it breaks acme's."""
    rng = np.random.default_rng(6)
    heads = _heads(8, rng)
    pool = rng.standard_normal((4000, 8)).astype(np.float32)
    says = [TASK_TYPES[int(i)] for i in heads.type_head(pool).argmax(axis=1)]
    x = pool[[i for i in range(4000) if says[i] in ("math", "coding")][:600]]  # prompts alike
    tenants = ["acme" if i % 8 == 0 else "evil" for i in range(600)]
    current = [TASK_TYPES[int(i)] for i in heads.type_head(x).argmax(axis=1)]
    labels = [
        current[i] if t == "acme" else ("math" if x[i, 0] > 0 else "coding") for i, t in enumerate(tenants)
    ]
    decision = retrain.retrain(heads, _data(labels, x, tenants=tenants), holdout=0.25)
    t = decision.report["type"]
    assert t["candidate"]["macro_f1"] > t["current"]["macro_f1"] and t["p_value"] < 0.05  # evil's win
    assert not decision.promoted, decision.reasons
    acme = t["by_tenant"]["acme"]
    assert acme["broken"] > acme["fixed"] and acme["rows"] == 18
    assert any("worse on the holdout for acme (fixed 0, broken 2" in r for r in decision.reasons), (
        decision.reasons
    )
