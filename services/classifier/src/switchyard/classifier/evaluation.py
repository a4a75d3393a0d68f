"""Metrics: macro-F1, per-class precision/recall/F1, confusion matrix, calibration of probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, label in enumerate(labels):
        tp = confusion[i, i]
        support = int(confusion[i].sum())
        predicted = int(confusion[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": support,
        }
        if support:
            f1s.append(f1)
    return {
        "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
        "accuracy": round(float((y_true == y_pred).mean()) if len(y_true) else 0.0, 4),
        "n": len(y_true),
        "per_class": per_class,
        "labels": list(labels),
        "confusion": confusion.tolist(),
    }


def calibration(prob: np.ndarray, outcome: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error, Brier score and the reliability table of P(outcome) predictions."""
    prob = np.clip(prob.astype(np.float64), 0, 1)
    outcome = outcome.astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        mean_p, rate = float(prob[sel].mean()), float(outcome[sel].mean())
        ece += sel.mean() * abs(mean_p - rate)
        table.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "n": int(sel.sum()),
                "predicted": round(mean_p, 4),
                "observed": round(rate, 4),
            }
        )
    base = float(outcome.mean()) if len(outcome) else 0.0
    auc = _auc(prob, outcome)
    return {
        "n": len(prob),
        "ece": round(float(ece), 4),
        "brier": round(float(np.mean((prob - outcome) ** 2)) if len(prob) else 0.0, 4),
        "brier_of_base_rate": round(float(np.mean((base - outcome) ** 2)) if len(prob) else 0.0, 4),
        "auc": round(auc, 4),
        "reliability": table,
    }


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `y` (a grid search, deterministic)."""
    best, best_nll = 1.0, float("inf")
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 121)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))
        if nll < best_nll:
            best, best_nll = float(t), nll
    return round(best, 4)


def confidence_calibration(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Is the top label's probability the chance it is right? ECE/Brier/reliability of the confidence."""
    conf = probs.max(axis=1)
    return calibration(conf, (probs.argmax(axis=1) == y_true).astype(np.float64), bins=bins)


def _auc(score: np.ndarray, outcome: np.ndarray) -> float:
    pos, neg = score[outcome > 0.5], score[outcome <= 0.5]
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def format_report(report: dict[str, Any]) -> str:
    """A markdown table of per-class metrics and the confusion matrix."""
    lines = [
        f"macro-F1 **{report['macro_f1']:.3f}**, accuracy {report['accuracy']:.3f}, n={report['n']}",
        "",
        "| type | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for label, m in report["per_class"].items():
        if m["support"]:
            lines.append(
                f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
            )
    labels = report["labels"]
    short = [label[:6] for label in labels]
    lines += [
        "",
        "confusion (rows: true, columns: predicted)",
        "",
        "| | " + " | ".join(short) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for label, row in zip(short, report["confusion"], strict=True):
        if sum(row):
            lines.append(f"| {label} | " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)
