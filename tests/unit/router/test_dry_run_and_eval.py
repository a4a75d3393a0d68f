"""`route --dry-run` and `router eval` logic, with a fake classifier behind the `Classify` boundary."""

from __future__ import annotations

import io
import json

import pytest

from switchyard.common.events import ChatMessage, ChatRequest, Classification, TaskSubmitted
from switchyard.common.policy import load_policy
from switchyard.router.dry_run import route_rows
from switchyard.router.evaluation import Outcome, best_within, curve, evaluate

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
    assert out[1]["model"] == "openai/o3" and set(out[0]) == {"id", "tier", "model", "strategy"}
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
