from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage, ChatRequest, Classification
from switchyard.executor.quality import Answer, Context, failures, score

pytestmark = pytest.mark.unit
ALL = ["json", "code", "refusal", "truncation", "confidence"]


def ctx(task_type: str = "qa", confidence: float = 0.9, **request: object) -> Context:
    req = ChatRequest(messages=[ChatMessage(role="user", content="x")], **request)  # type: ignore[arg-type]
    cls = Classification(
        type=task_type, confidence=confidence, complexity=0.5, urgency=0.5, model_version="t", latency_ms=1
    )
    return Context(req, cls, min_confidence=0.5)


@pytest.mark.parametrize(
    ("answer", "context", "failed"),
    [
        (Answer("Paris.", "stop"), ctx(), []),
        (Answer("", "stop"), ctx(), ["refusal"]),
        (Answer("As an AI language model, I cannot", "stop"), ctx(), ["refusal"]),
        (Answer("Paris is", "length"), ctx(), ["truncation"]),
        (Answer("Paris.", "stop"), ctx(confidence=0.2), ["confidence"]),
        (Answer('```json\n{"a": 1}\n```', "stop"), ctx(response_format={"type": "json_object"}), []),
        (Answer("{a: 1}", "stop"), ctx(response_format={"type": "json_object"}), ["json"]),
        (Answer("```python\nprint('hi')\n```", "stop"), ctx("coding"), []),
        (Answer("```python\nprint('hi'\n```", "stop"), ctx("coding"), ["code"]),
        (Answer("```js\nfunction( {\n```", "stop"), ctx("coding"), []),  # only Python is judged
    ],
)
def test_checks(answer: Answer, context: Context, failed: list[str]) -> None:
    assert [f.split(":")[0] for f in failures(answer, context, ALL)] == failed


def test_only_the_named_checks_run() -> None:
    assert failures(Answer("", "length"), ctx(), ["json"]) == []


def test_the_scorer_prefers_a_passing_complete_answer() -> None:
    good, cut = Answer("A full answer.", "stop"), Answer("A full answer that goes on", "length")
    assert score(good, ctx(), ALL) > score(cut, ctx(), ALL)
