"""`route --dry-run` and `router eval` logic, with a fake classifier behind the `Classify` boundary."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from switchyard.common.events import ChatMessage, ChatRequest, Classification, TaskSubmitted
from switchyard.common.policy import load_policy
from switchyard.router.dry_run import route_rows
from switchyard.router.evaluation import (
    Outcome,
    best_within,
    curve,
    evaluate,
    fit_threshold,
    interval,
    route,
    score,
)

pytestmark = pytest.mark.unit
POLICY = load_policy()
ALL = {"openai", "anthropic", "local"}


def fake_classify(tasks: list[TaskSubmitted]) -> list[Classification]:
    """Complexity from the prompt's length: long prompts look hard."""
    return [
        Classification(
            type="qa",
            confidence=0.9,
            complexity=min(len(t.request.prompt_text()) / 100, 1.0),
            urgency=0.5,
            model_version="fake",
            latency_ms=0,
        )
        for t in tasks
    ]


def test_dry_run_writes_one_line_per_prompt_in_order() -> None:
    rows = [(1, "hi"), ("b", "x" * 95), (3, "y" * 45)]
    out = list(route_rows(rows, classify=fake_classify, policy=POLICY, available=ALL, batch=2))
    assert [r["id"] for r in out] == [1, "b", 3]
    assert [r["tier"] for r in out] == ["fast", "premium", "fast"]  # the cascade starts on the fast tier
    assert [r["strategy"] for r in out] == ["single", "single", "cascade"]
    assert out[1]["model"] == "openai/gpt-6.1-sol" and set(out[0]) == {"id", "tier", "model", "strategy"}
    json.dumps(out)  # JSON lines


def test_dry_run_reports_unroutable_rows_instead_of_stopping() -> None:
    out = list(route_rows([(1, "hi")], classify=fake_classify, policy=POLICY, available=set()))
    assert out[0]["model"] is None and "no configured provider" in out[0]["error"]


def test_the_cli_reads_jsonl_lines() -> None:
    from switchyard.classifier.offline import read_jsonl

    text = '{"id": 1, "prompt": "a"}\n\nnot json\n{"prompt": "b"}\n'
    assert list(read_jsonl(io.StringIO(text))) == [(1, "a"), (4, "b")]


def outcome(complexity: float, weak: bool, strong: bool) -> Outcome:
    request = ChatRequest(messages=[ChatMessage(role="user", content="q")])
    cls = Classification(
        type="qa", confidence=0.9, complexity=complexity, urgency=0.5, model_version="t", latency_ms=0
    )
    return Outcome(request, cls, weak, strong, prompt_tokens=10)


def test_a_perfect_complexity_signal_reaches_premium_quality_with_few_premium_calls() -> None:
    # 8 rows the weak model gets right (easy), 2 only the strong model gets right (hard).
    rows = [outcome(0.1, True, True)] * 8 + [outcome(0.9, False, True)] * 2
    at = evaluate(rows, POLICY, available=ALL, threshold=0.5)
    assert (at.premium_share, at.quality, at.relative_quality) == (0.2, 1.0, 1.0)
    points = curve(rows, POLICY, available=ALL, steps=5)
    assert points[0].premium_share == 0.0 and points[0].relative_quality == 0.8
    assert points[-1].premium_share == 1.0
    best = best_within(points, max_premium_share=0.3)
    assert best is not None and best.relative_quality == 1.0
    assert at.cost_per_correct_usd > 0


def grouped(complexity: float, weak: bool, strong: bool, group: str) -> Outcome:
    o = outcome(complexity, weak, strong)
    return Outcome(o.request, o.classification, weak, strong, prompt_tokens=10, group=group)


def test_a_threshold_fit_on_one_split_is_scored_on_another() -> None:
    # fit split: the weak model fails above 0.6; the report split: it fails above 0.4, so the threshold
    # chosen on the fit split (0.6) misses the report split's 0.4-0.6 band (premium would have helped).
    fit = [outcome(c / 10, c < 6, True) for c in range(10)]
    at = fit_threshold(fit, POLICY, available=ALL, max_premium_share=0.5)
    assert at is not None and at.premium_share <= 0.5 and at.relative_quality == 1.0
    report = [outcome(c / 10, c < 4, True) for c in range(10)]
    scored = score(report, route(report, POLICY, available=ALL, threshold=at.threshold))
    assert scored.relative_quality == 0.8 and scored.premium_share == at.premium_share
    hindsight = best_within(curve(report, POLICY, available=ALL), max_premium_share=0.6)
    assert hindsight is not None and hindsight.relative_quality == 1.0  # why hindsight is not a result


def test_the_interval_resamples_whole_subjects_and_brackets_the_estimate() -> None:
    # subject "a": premium rescues every row; subject "b": premium changes nothing
    rows = [grouped(0.9, False, True, "a")] * 5 + [grouped(0.1, True, True, "b")] * 5
    rows += [grouped(0.1, False, True, "c")] * 5  # the router misses subject "c"
    routed = route(rows, POLICY, available=ALL, threshold=0.5)
    point = score(rows, routed, threshold=0.5)
    lo, hi = interval(rows, routed, samples=400)
    assert lo <= point.relative_quality <= hi and hi - lo > 0.2  # 3 subjects: a wide interval
    same = [grouped(0.9, False, True, "a")] * 15
    assert interval(same, route(same, POLICY, available=ALL, threshold=0.5), samples=50) == (1.0, 1.0)


def test_router_eval_reports_and_fits_on_disjoint_subjects(tmp_path: Path) -> None:
    from switchyard.cli.router_cmd import load_rows

    lines = [
        {
            "id": f"{s}-{i}",
            "source": "mmlu_routellm",
            "prompt": "q",
            "label_type": "qa",
            "native_label": f"subject_{s}",
            "weak_correct": True,
            "strong_correct": True,
        }
        for s in range(40)
        for i in range(3)
    ]
    lines.append({**lines[0], "id": "no-outcome", "weak_correct": None})
    lines.append({**lines[0], "id": "other", "source": "gsm8k_train"})
    data = tmp_path / "pool.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    split = {name: load_rows(data, split=name, limit=None) for name in ("heldout", "train", "all")}
    subjects = {name: {r["native_label"] for r in rows} for name, rows in split.items()}
    assert subjects["heldout"] and subjects["train"] and not subjects["heldout"] & subjects["train"]
    assert len(split["all"]) == 120 == sum(len(split[n]) for n in ("heldout", "train"))
    assert load_rows(data, split="all", limit=7) == split["all"][:7]


def test_router_eval_check_fails_when_the_goal_is_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`router eval --check` exits 1 when the configured routing misses the goal, so CI can gate on it;
    the same run without a miss exits 0. (Without `--check`, the report alone, exit 0 either way.)"""
    from switchyard.cli.main import main

    def pool(weak: bool) -> Path:
        rows = [
            {"id": f"{s}-{i}", "source": "mmlu_routellm", "prompt": f"What is {s} + {i}?", "label_type": "qa",
             "native_label": f"subject_{s}", "weak_correct": weak, "strong_correct": True}
            for s in range(40) for i in range(2)
        ]  # fmt: skip
        path = tmp_path / f"pool-{weak}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
        return path

    args = ["router", "eval", "--split", "all", "--fit-rows", "0", "--steps", "2", "--check", "--data"]
    assert main([*args, str(pool(weak=False))]) == 1  # the weak model never right: far below 95 %
    assert "goal (>= 95% with <= 30% premium): NOT met as configured" in capsys.readouterr().out
    assert main([*args, str(pool(weak=True))]) == 0


def test_dry_run_learns_the_adaptive_threshold_from_the_rows_before_as_the_router_does() -> None:
    """The bundled policy sends the hardest 30 % of recent traffic to premium once 200 tasks were seen: a
    router that routed 250 prompts of complexity 0.40 sends one of 0.45 to premium (above the window's
    upper 30 %), though below the static 0.5; the dry run says the same, with the threshold it used."""
    rows = [(n, "y" * 40) for n in range(250)] + [("last", "y" * 45)]
    out = list(route_rows(rows, classify=fake_classify, policy=POLICY, available=ALL, explain=True))
    assert out[0]["reasons"]["thresholds"]["adaptive_share"] is None  # warming up: the static 0.5
    last = out[-1]
    assert last["tier"] == "premium" and last["reasons"]["thresholds"]["premium_above"] == 0.4
    assert last["reasons"]["thresholds"]["adaptive_share"] == 0.3
