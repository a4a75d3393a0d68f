"""`switchyard router eval`: routing quality against the share of premium calls, on public prompts with
recorded weak/strong model outcomes (RouteLLM's MMLU files in the classifier's training pool).

Two disjoint sets of MMLU subjects: the *report* split (the fifth of subjects the classifier's complexity
head never trained on) is where every number is measured; the *fit* split (the other subjects, which the
complexity head trained on) is where the static threshold is chosen. Nothing is chosen on the rows it is
reported on."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("/work/shared/data/classifier/train_pool.jsonl")
OUTCOME_SOURCE = "mmlu_routellm"
GOAL_QUALITY, GOAL_SHARE = 0.95, 0.30


def _subject_hash(row: dict[str, Any]) -> int:
    return int(hashlib.sha256(row["native_label"].encode()).hexdigest(), 16)


def role_rule() -> Callable[[dict[str, Any]], str]:
    """The classifier's own rule for MMLU subjects ("heldout" or "train"), so the report split is
    never a subject the complexity head trained on; the same rule by hash if that module is not there."""
    try:
        from switchyard.classifier.dataset import Example
        from switchyard.classifier.training import complexity_role
    except ImportError:
        return lambda row: "heldout" if _subject_hash(row) % 5 == 0 else "train"

    def rule(row: dict[str, Any]) -> str:
        ex = Example(
            id=row["id"],
            source=row["source"],
            prompt=row["prompt"],
            label=row["label_type"],
            native_label=row.get("native_label", ""),
        )
        return str(complexity_role(ex))

    return rule


def load_rows(path: Path, *, split: str, limit: int | None) -> list[dict[str, Any]]:
    """Rows with recorded outcomes of one split ("heldout", "train" or "all"), in a stable order."""
    rule = role_rule()
    rows = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("source") != OUTCOME_SOURCE or row.get("weak_correct") is None:
            continue
        if split == "all" or rule(row) == split:
            rows.append(row)
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    return rows[:limit] if limit else rows


def _outcomes(rows: list[dict[str, Any]], classify: Any) -> list[Any]:
    from switchyard.common.tokens import count_prompt
    from switchyard.router.dry_run import task_for
    from switchyard.router.evaluation import Outcome

    tasks = [task_for(r["id"], r["prompt"], tenant_id="eval") for r in rows]
    return [
        Outcome(
            t.chat(),
            c,
            bool(r["weak_correct"]),
            bool(r["strong_correct"]),
            count_prompt(t.chat()),
            group=r.get("native_label", ""),
        )
        for r, t, c in zip(rows, tasks, classify(tasks), strict=True)
    ]


def _eval(args: argparse.Namespace) -> int:
    from switchyard.cli.route_cmd import classifier_predictor
    from switchyard.common.policy import load_policy
    from switchyard.router.evaluation import best_within, curve, fit_threshold, interval, route, score

    policy = load_policy(args.policy)
    available = {m.provider for m in policy.models}
    rows = load_rows(args.data, split=args.split, limit=args.limit)
    if not rows:
        print(f"no rows with recorded outcomes in {args.data}", file=sys.stderr)
        return 1
    fit_split = "train" if args.split == "heldout" and args.fit_rows else None
    fit_rows = load_rows(args.data, split=fit_split, limit=args.fit_rows) if fit_split else []
    classify = classifier_predictor(artifact=args.artifact, threads=args.threads)
    outcomes = _outcomes(rows, classify)
    points = curve(outcomes, policy, available=available, steps=args.steps)
    routed = route(outcomes, policy, available=available)  # as configured (an adaptive share learns online)
    at = score(outcomes, routed)
    th = policy.thresholds
    configured = (
        f"adaptive: the hardest {th.premium_share:.0%} of the last {th.window} tasks, premium_above "
        f"{th.premium_above} for the first {th.min_samples} (mean threshold {at.threshold})"
        if th.premium_share is not None
        else f"static threshold {th.premium_above}"
    )
    fitted = fitted_on_report = None
    if fit_rows:
        fit_outcomes = _outcomes(fit_rows, classify)
        fitted = fit_threshold(fit_outcomes, policy, available=available, max_premium_share=GOAL_SHARE)
    if fitted is not None:
        fr = route(outcomes, policy, available=available, threshold=fitted.threshold)
        fitted_on_report = (score(outcomes, fr, threshold=fitted.threshold), interval(outcomes, fr))
    weak = sum(o.weak_correct for o in outcomes) / len(outcomes)
    strong = sum(o.strong_correct for o in outcomes) / len(outcomes)
    hindsight = best_within(points, max_premium_share=GOAL_SHARE)
    ci = interval(outcomes, routed)
    report = {
        "report_split": {"split": args.split, "rows": len(outcomes), "subjects": _subjects(rows)},
        "fit_split": {"split": fit_split, "rows": len(fit_rows), "subjects": _subjects(fit_rows)},
        "always_weak_quality": round(weak, 4),
        "always_premium_quality": round(strong, 4),
        "configured": {**_point(at), "relative_quality_90ci": _round(ci), "how": configured},
        "fit_threshold": (
            {
                "chosen_on_fit": _point(fitted),
                "on_report": _point(fitted_on_report[0]),
                "relative_quality_90ci": _round(fitted_on_report[1]),
            }
            if fitted is not None and fitted_on_report is not None
            else None
        ),
        "hindsight_best_within_30pct_premium": _point(hindsight) if hindsight else None,
        "goal": {"relative_quality": GOAL_QUALITY, "max_premium_share": GOAL_SHARE},
        "goal_met_at_configured": at.relative_quality >= GOAL_QUALITY and at.premium_share <= GOAL_SHARE,
        "curve": [_point(p) for p in points],
    }
    missed = args.check and not report["goal_met_at_configured"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report, weak=weak, strong=strong)
    return 1 if missed else 0


def _print(report: dict[str, Any], *, weak: float, strong: float) -> None:
    rs, fs = report["report_split"], report["fit_split"]
    print(
        f"report split: {rs['rows']} prompts from {rs['subjects']} MMLU subjects ({rs['split']}) with "
        "recorded outcomes; every number below is measured on it"
    )
    if fs["split"]:
        print(
            f"fit split: {fs['rows']} prompts from {fs['subjects']} other subjects (the complexity head's "
            "training subjects), used only to choose the static threshold"
        )
    print(
        f"always weak: {weak:.4f}   always premium: {strong:.4f}   "
        f"(weak alone keeps {weak / strong:.1%} of premium quality)"
    )
    print(
        "\n| premium threshold | premium calls | quality | vs always-premium | est. cost per correct answer |"
    )
    print("|---|---|---|---|---|")
    for p in report["curve"]:
        print(
            f"| {p['threshold']:.4f} | {p['premium_share']:.1%} | {p['quality']:.4f} | "
            f"{p['relative_quality']:.1%} | ${p['cost_per_correct_usd']:.6f} |"
        )
    c = report["configured"]
    lo, hi = c["relative_quality_90ci"]
    print(
        f"\nconfigured ({c['how']}): {c['relative_quality']:.1%} of always-premium quality "
        f"(90% interval over subjects {lo:.1%}-{hi:.1%}) with {c['premium_share']:.1%} premium calls"
    )
    if report["fit_threshold"]:
        f = report["fit_threshold"]
        lo, hi = f["relative_quality_90ci"]
        print(
            f"threshold chosen on the fit split ({f['chosen_on_fit']['threshold']}, best there within "
            f"{GOAL_SHARE:.0%} premium): {f['on_report']['relative_quality']:.1%} ({lo:.1%}-{hi:.1%}) with "
            f"{f['on_report']['premium_share']:.1%} premium calls on the report split"
        )
    if report["hindsight_best_within_30pct_premium"]:
        b = report["hindsight_best_within_30pct_premium"]
        print(
            f"(hindsight, picked on the report split itself, so optimistic: {b['relative_quality']:.1%} at "
            f"threshold {b['threshold']}, {b['premium_share']:.1%} premium)"
        )
    print(
        f"goal (>= {GOAL_QUALITY:.0%} with <= {GOAL_SHARE:.0%} premium): "
        f"{'met' if report['goal_met_at_configured'] else 'NOT met'} as configured"
    )


def _subjects(rows: list[dict[str, Any]]) -> int:
    return len({r.get("native_label", "") for r in rows})


def _round(pair: tuple[float, float]) -> list[float]:
    return [round(pair[0], 4), round(pair[1], 4)]


def _point(p: Any) -> dict[str, float]:
    return {
        "threshold": p.threshold,
        "premium_share": round(p.premium_share, 4),
        "quality": round(p.quality, 4),
        "relative_quality": round(p.relative_quality, 4),
        "cost_per_correct_usd": round(p.cost_per_correct_usd, 8),
    }


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    router = sub.add_parser("router", help="routing evaluation")
    router_sub = router.add_subparsers(dest="router_command", required=True)
    ev = router_sub.add_parser(
        "eval", help="quality vs share of premium calls, as a curve and at the threshold"
    )
    ev.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ev.add_argument(
        "--split",
        choices=["heldout", "train", "all"],
        default="heldout",
        help="the rows reported on (heldout: subjects the complexity head never trained on)",
    )
    ev.add_argument(
        "--fit-rows",
        type=int,
        default=2000,
        help="rows of the training subjects the static threshold is chosen on (a stable sample; 0: skip)",
    )
    ev.add_argument("--policy", type=Path)
    ev.add_argument("--limit", type=int, help="at most this many rows (a stable sample)")
    ev.add_argument("--steps", type=int, default=20)
    ev.add_argument("--artifact", type=Path, help="classifier artifact folder")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true")
    ev.add_argument(
        "--check", action="store_true", help="exit 1 when the goal is not met as configured (for CI)"
    )
    ev.set_defaults(func=_eval)
