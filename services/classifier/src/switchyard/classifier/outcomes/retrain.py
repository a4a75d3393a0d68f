"""Retraining the heads from the platform's own outcomes, with a time-split holdout and a promotion gate.

The dataset joins the ledger's outcomes (labels) with the opt-in feature store (inputs) by (tenant, task).
The oldest rows train, the newest `holdout` fraction judges: the candidate heads start from the current
ones (fine-tuning, so what the public data taught is kept) and a head is promoted only if it beats the
current one on the holdout — type by macro-F1, complexity by Brier score. Otherwise the current artifact
stays, and the decision says why. Each type head learns from, and is judged on, the prompts it reads in
service: the other-scripts head (heads.ScriptHead) those in other scripts and other Latin-script
languages, the main head the rest; the complexity head reads every prompt.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from switchyard.classifier import features
from switchyard.classifier.evaluation import calibration, classification_report
from switchyard.classifier.heads import Heads, Mlp, sigmoid, softmax
from switchyard.classifier.mlp_train import TrainConfig, train_mlp
from switchyard.classifier.outcomes.ledger import TaskOutcome
from switchyard.classifier.outcomes.store import StoredFeatures

FINE_TUNE = TrainConfig(epochs=30, batch_size=32, lr=3e-4, weight_decay=1e-4, input_dropout=0.0, dropout=0.0)
# A candidate must beat the current head beyond chance on the holdout: the one-sided p-value of its gain
# (exact McNemar for the type heads, a paired sign-flip test of the Brier terms for complexity) at most
# this. Four holdout rows can never pass (1/2**4 > 0.05): a holdout that small keeps the current heads.
MAX_P = 0.05
SIGN_FLIPS = 4000


@dataclass(frozen=True, slots=True)
class OutcomeData:
    x: np.ndarray  # raw features [n, dim] (not standardised)
    type_y: np.ndarray  # label index, -1 where unknown
    failed_y: np.ndarray  # 1.0 / 0.0, nan where unknown
    order: list[TaskOutcome]
    other_language: np.ndarray | None = None  # [n] bool: in another Latin-script language (store)

    def sha256(self) -> str:
        h = hashlib.sha256()
        for o, t, f in zip(self.order, self.type_y, self.failed_y, strict=True):
            h.update(f"{o.tenant_id}/{o.task_id}/{int(t)}/{f}\n".encode())
        h.update(self.x.tobytes())
        if self.other_language is not None:  # which head each row trains
            h.update(np.packbits(self.other_language).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Decision:
    promoted: bool
    heads: Heads  # the new heads when promoted, else the current ones
    reasons: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def dataset(
    found: list[TaskOutcome], stored: dict[tuple[str, str], StoredFeatures], labels: tuple[str, ...]
) -> OutcomeData:
    index = {label: i for i, label in enumerate(labels)}
    rows, xs, ty, fy, lang = [], [], [], [], []
    for o in found:
        feats = stored.get((o.tenant_id, o.task_id))
        label, failed = o.type_label, o.cheap_failed
        if feats is None or (label not in index and failed is None):
            continue
        rows.append(o)
        xs.append(feats.vector)
        ty.append(index.get(label, -1) if label else -1)
        fy.append(np.nan if failed is None else float(failed))
        lang.append(feats.other_language)
    dim = len(xs[0]) if xs else 0
    x = np.stack(xs).astype(np.float32) if xs else np.zeros((0, dim), dtype=np.float32)
    return OutcomeData(
        x, np.array(ty, dtype=np.int64), np.array(fy, dtype=np.float64), rows, np.array(lang, dtype=bool)
    )


def next_version(version: str) -> str:
    m = re.fullmatch(r"(.*-)(\d+)", version)
    return f"{m.group(1)}{int(m.group(2)) + 1}" if m else f"{version}-2"


def retrain(
    current: Heads,
    data: OutcomeData,
    *,
    holdout: float = 0.2,
    min_rows: int = 20,
    seed: int = 20240601,
) -> Decision:
    n = len(data.order)
    cut = round(n * (1 - holdout))
    train, test = np.arange(cut), np.arange(cut, n)
    if n < min_rows or len(test) == 0:
        return Decision(False, current, [f"{n} usable outcomes (need {min_rows}): current heads kept"])
    if data.x.shape[1] != current.mean.shape[0]:
        return Decision(False, current, ["stored features do not match the current heads' input size"])
    xs = (data.x - current.mean) / current.std
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {
        "rows": n,
        "train_rows": cut,
        "holdout_rows": len(test),
        "holdout_from": data.order[cut].classified_at.isoformat(),
        "data_sha256": data.sha256(),
    }
    reasons: list[str] = []
    new = current

    other = current.other_scripts
    read_by_other = (
        other.takes(data.x[:, -features.DIM :], data.other_language)
        if other is not None
        else np.zeros(n, dtype=bool)
    )
    known = data.type_y >= 0
    tenants = np.array([o.tenant_id for o in data.order])
    main = _fine_tune_type(
        "type head", current.type_head, xs, data.type_y, current.temperature, current.labels,
        train[known[train] & ~read_by_other[train]], test[known[test] & ~read_by_other[test]], rng,
        tenants,
    )  # fmt: skip
    if main.report:
        report["type"] = main.report
    reasons.append(main.reason)
    if main.head is not None:
        new = replace(new, type_head=main.head)
    if other is not None:
        second = _fine_tune_type(
            "other-scripts type head", other.type_head, (data.x - other.mean) / other.std, data.type_y,
            other.temperature, current.labels,
            train[known[train] & read_by_other[train]], test[known[test] & read_by_other[test]], rng,
            tenants,
        )  # fmt: skip
        if second.report:
            report["type_other_scripts"] = second.report
        reasons.append(second.reason)
        if second.head is not None:
            new = replace(new, other_scripts=replace(other, type_head=second.head))

    tr = train[~np.isnan(data.failed_y[train])]
    te = test[~np.isnan(data.failed_y[test])]
    alike = [
        f"{name} ({int(data.failed_y[rows][0])})"
        for name, rows in (("train", tr), ("holdout", te))
        if len(rows) and len(np.unique(data.failed_y[rows])) == 1
    ]
    if alike:
        reasons.append(
            f"complexity head kept: every task of the {' and '.join(alike)} rows ended alike (1: fell "
            "short, 0: did not): nothing to tell hard tasks from easy ones by"
        )
    elif len(tr) and len(te):
        cand = train_mlp(
            xs[tr], data.failed_y[tr].astype(np.float32), weights=np.ones(len(tr)), outputs=1,
            config=FINE_TUNE, rng=rng, binary=True, init=current.complexity_head,
        )  # fmt: skip
        p_cur, p_cand = sigmoid(current.complexity_head(xs[te])[:, 0]), sigmoid(cand(xs[te])[:, 0])
        before = calibration(p_cur, data.failed_y[te])
        after = calibration(p_cand, data.failed_y[te])
        gain = (p_cur - data.failed_y[te]) ** 2 - (p_cand - data.failed_y[te]) ** 2  # > 0: candidate better
        p = sign_flip_p(gain, np.random.default_rng(seed))
        report["complexity"] = {"current": before, "candidate": after, "train_rows": len(tr), "p_value": p}
        harmed = _harmed(tenants[te], gain)
        if after["brier"] >= before["brier"]:
            reasons.append(
                f"complexity head kept: candidate Brier {after['brier']} does not beat {before['brier']}"
            )
        elif harmed:
            reasons.append(f"complexity head kept: its holdout Brier is worse for {', '.join(harmed)}")
        elif p > MAX_P:
            reasons.append(
                f"complexity head kept: holdout too small to decide: Brier {before['brier']} -> "
                f"{after['brier']} on {len(te)} rows could be chance (p={p} > {MAX_P})"
            )
        else:
            new = replace(new, complexity_head=cand)
            reasons.append(
                f"complexity head promoted: holdout Brier {before['brier']} -> {after['brier']} (p={p})"
            )
    else:
        reasons.append(f"complexity head kept: {len(tr)} train / {len(te)} holdout rows with an outcome")

    if new is current:
        return Decision(False, current, reasons, report)
    return Decision(True, replace(new, version=next_version(current.version)), reasons, report)


@dataclass(frozen=True, slots=True)
class _TypeFit:
    head: Mlp | None  # the candidate, when it beat the current head
    reason: str
    report: dict[str, Any]


def _fine_tune_type(
    name: str,
    head: Mlp,
    xs: np.ndarray,
    y: np.ndarray,
    temperature: float,
    labels: tuple[str, ...],
    tr: np.ndarray,
    te: np.ndarray,
    rng: np.random.Generator,
    tenants: np.ndarray,
) -> _TypeFit:
    """One type head fine-tuned on its training rows `tr` and judged against itself on `te` (standardised
    inputs `xs`, its own normalisation), overall and for each organisation (`tenants`, by row)."""
    if not len(tr) or not len(te):
        return _TypeFit(None, f"{name} kept: {len(tr)} train / {len(te)} holdout rows with a known type", {})
    cand = train_mlp(
        xs[tr], y[tr], weights=np.ones(len(tr)), outputs=len(labels), config=FINE_TUNE, rng=rng, init=head
    )
    before, right_before = _type_report(head, temperature, xs[te], y[te], labels)
    after, right_after = _type_report(cand, temperature, xs[te], y[te], labels)
    fixed, broken = int(np.sum(right_after & ~right_before)), int(np.sum(right_before & ~right_after))
    p = mcnemar_p(fixed, broken)
    gain = right_after.astype(np.int64) - right_before.astype(np.int64)  # 1: fixed, -1: broken
    by_tenant = {
        str(t): {"rows": len(g), "fixed": int(np.sum(g > 0)), "broken": int(np.sum(g < 0))}
        for t in np.unique(tenants[te])
        for g in [gain[tenants[te] == t]]
    }
    report = {
        "current": before, "candidate": after, "train_rows": len(tr),
        "fixed": fixed, "broken": broken, "p_value": p, "by_tenant": by_tenant,
    }  # fmt: skip
    if after["macro_f1"] <= before["macro_f1"]:
        kept = f"{name} kept: candidate macro-F1 {after['macro_f1']} does not beat {before['macro_f1']}"
        return _TypeFit(None, kept, report)
    if harmed := _harmed(tenants[te], gain):
        worse = ", ".join(
            f"{t} (fixed {by_tenant[t]['fixed']}, broken {by_tenant[t]['broken']} of its "
            f"{by_tenant[t]['rows']} rows)"
            for t in harmed
        )
        return _TypeFit(None, f"{name} kept: worse on the holdout for {worse}", report)
    if p > MAX_P:
        kept = (
            f"{name} kept: holdout too small to decide: macro-F1 {before['macro_f1']} -> "
            f"{after['macro_f1']} on {len(te)} rows, {fixed} fixed and {broken} broken could be chance "
            f"(p={p} > {MAX_P})"
        )
        return _TypeFit(None, kept, report)
    promoted = f"{name} promoted: holdout macro-F1 {before['macro_f1']} -> {after['macro_f1']} (p={p})"
    return _TypeFit(cand, promoted, report)


def _harmed(tenants: np.ndarray, gain: np.ndarray) -> list[str]:
    """The organisations whose holdout rows the candidate does worse on in sum (per-row `gain` < 0:
    worse), so that one organisation's many labels cannot buy a head that serves another worse."""
    return [str(t) for t in np.unique(tenants) if gain[tenants == t].sum() < -1e-9]


def mcnemar_p(fixed: int, broken: int) -> float:
    """One-sided exact McNemar: the chance of at least `fixed` of the `fixed + broken` rows on which two
    heads disagree about being right going the candidate's way, were neither better."""
    n = fixed + broken
    return round(float(sum(math.comb(n, k) for k in range(fixed, n + 1)) / (1 << n)), 6)


def sign_flip_p(gain: np.ndarray, rng: np.random.Generator) -> float:
    """One-sided paired sign-flip test: the share of random sign flips of the per-row gains whose sum is
    at least the observed one (the observed sum counted among them)."""
    if not len(gain) or gain.sum() <= 0:
        return 1.0
    signs = rng.choice((-1.0, 1.0), size=(SIGN_FLIPS, len(gain)))
    at_least = int(np.sum(signs @ gain >= gain.sum() - 1e-12))
    return round((at_least + 1) / (SIGN_FLIPS + 1), 6)


def _type_report(
    head: Any, temperature: float, x: np.ndarray, y: np.ndarray, labels: tuple[str, ...]
) -> tuple[dict[str, Any], np.ndarray]:
    """The head's numbers on (x, y), and which rows it gets right."""
    predicted = softmax(head(x) / temperature).argmax(axis=1)
    report = classification_report(y, predicted, labels)
    return {"macro_f1": report["macro_f1"], "accuracy": report["accuracy"], "n": report["n"]}, predicted == y
