"""`switchyard router eval`: routing quality against the share of premium calls, on public prompts with
recorded weak/strong model outcomes (RouteLLM's MMLU files in the classifier's training pool), on the
MMLU subjects the classifier's complexity head never trained on."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("/work/shared/data/classifier/train_pool.jsonl")
OUTCOME_SOURCE = "mmlu_routellm"
GOAL_QUALITY, GOAL_SHARE = 0.95, 0.30


def heldout_rule():  # type: ignore[no-untyped-def]
    """The classifier's own held-out rule for MMLU subjects, so its complexity is never scored on rows
    it trained on; the same rule (a fifth of subjects, by hash) if that module is not there."""
    try:
        from switchyard.classifier.dataset import Example
        from switchyard.classifier.training import is_complexity_heldout
    except ImportError:
        return lambda row: int(hashlib.sha256(row["native_label"].encode()).hexdigest(), 16) % 5 == 0

    def rule(row: dict[str, Any]) -> bool:
        ex = Example(
            id=row["id"],
            source=row["source"],
            prompt=row["prompt"],
            label=row["label_type"],
            native_label=row.get("native_label", ""),
        )
        return bool(is_complexity_heldout(ex))

    return rule


def load_rows(path: Path, *, split: str, limit: int | None) -> list[dict[str, Any]]:
    rule = heldout_rule()
    rows = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("source") != OUTCOME_SOURCE or row.get("weak_correct") is None:
            continue
        if split == "all" or rule(row) == (split == "heldout"):
            rows.append(row)
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    return rows[:limit] if limit else rows


def _eval(args: argparse.Namespace) -> int:
    from switchyard.cli.route_cmd import classifier_predictor
    from switchyard.common.policy import load_policy
    from switchyard.router.dry_run import task_for
    from switchyard.router.evaluation import Outcome, best_within, curve, evaluate
    from switchyard.router.tokens import count_prompt

    policy = load_policy(args.policy)
    available = {m.provider for m in policy.models}
    rows = load_rows(args.data, split=args.split, limit=args.limit)
    if not rows:
        print(f"no rows with recorded outcomes in {args.data}", file=sys.stderr)
        return 1
    tasks = [task_for(r["id"], r["prompt"], tenant_id="eval") for r in rows]
    classify = classifier_predictor(artifact=args.artifact, threads=args.threads)
    outcomes = [
        Outcome(t.request, c, bool(r["weak_correct"]), bool(r["strong_correct"]), count_prompt(t.request))
        for r, t, c in zip(rows, tasks, classify(tasks), strict=True)
    ]
    points = curve(outcomes, policy, available=available, steps=args.steps)
    at = evaluate(outcomes, policy, available=available)  # as configured (an adaptive share learns online)
    th = policy.thresholds
    configured = (
        f"adaptive: the hardest {th.premium_share:.0%} of the last {th.window} tasks (mean threshold "
        f"{at.threshold})"
        if th.premium_share is not None
        else f"static threshold {th.premium_above}"
    )
    weak = sum(o.weak_correct for o in outcomes) / len(outcomes)
    strong = sum(o.strong_correct for o in outcomes) / len(outcomes)
    best = best_within(points, max_premium_share=GOAL_SHARE)
    report = {
        "rows": len(outcomes),
        "split": args.split,
        "always_weak_quality": round(weak, 4),
        "always_premium_quality": round(strong, 4),
        "configured": {**_point(at), "how": configured},
        "best_within_30pct_premium": _point(best) if best else None,
        "goal": {"relative_quality": GOAL_QUALITY, "max_premium_share": GOAL_SHARE},
        "goal_met_at_configured": at.relative_quality >= GOAL_QUALITY and at.premium_share <= GOAL_SHARE,
        "curve": [_point(p) for p in points],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(outcomes)} prompts ({args.split} MMLU subjects) with recorded outcomes")
    print(
        f"always weak: {weak:.4f}   always premium: {strong:.4f}   "
        f"(weak alone keeps {weak / strong:.1%} of premium quality)"
    )
    print(
        "\n| premium threshold | premium calls | quality | vs always-premium | est. cost per correct answer |"
    )
    print("|---|---|---|---|---|")
    for p in points:
        print(
            f"| {p.threshold:.4f} | {p.premium_share:.1%} | {p.quality:.4f} | {p.relative_quality:.1%} "
            f"| ${p.cost_per_correct_usd:.6f} |"
        )
    print(
        f"\nconfigured ({configured}): {at.relative_quality:.1%} of always-premium quality "
        f"with {at.premium_share:.1%} premium calls"
    )
    if best is not None:
        print(
            f"best with <= {GOAL_SHARE:.0%} premium calls: {best.relative_quality:.1%} "
            f"(threshold {best.threshold}, {best.premium_share:.1%} premium)"
        )
    print(
        f"goal (>= {GOAL_QUALITY:.0%} with <= {GOAL_SHARE:.0%} premium): "
        f"{'met' if report['goal_met_at_configured'] else 'NOT met'} as configured"
    )
    return 0


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
    ev.add_argument("--split", choices=["heldout", "train", "all"], default="heldout")
    ev.add_argument("--policy", type=Path)
    ev.add_argument("--limit", type=int, help="at most this many rows (a stable sample)")
    ev.add_argument("--steps", type=int, default=20)
    ev.add_argument("--artifact", type=Path, help="classifier artifact folder")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_eval)
