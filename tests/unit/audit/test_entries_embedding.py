from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchyard.audit.entries import draft_for
from switchyard.common import vectors
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import EmbeddingResult, TaskCompleted, Usage

pytestmark = pytest.mark.unit
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _completed(embedding: EmbeddingResult) -> TaskCompleted:
    return TaskCompleted(
        task_id="t1",
        tenant_id="acme",
        model="local/all-minilm-l6-v2",
        provider="local",
        tier="local",
        content="",
        finish_reason="stop",
        usage=Usage(prompt_tokens=9, completion_tokens=0),
        attempts=1,
        latency_ms=3.0,
        completed_at=AT,
        embedding=embedding,
    )


def _details(payload: TaskCompleted) -> dict[str, object]:
    event = CloudEvent(id="e1", source="switchyard/executor", type=payload.EVENT_TYPE, data={})
    return draft_for(event, payload).details


def test_the_vectors_are_recorded_by_digest_and_where_they_were_kept() -> None:
    inline = vectors.pack(b"\x00" * 16, count=2, dimensions=2)
    assert _details(_completed(inline))["embedding"] == {
        "count": 2,
        "dimensions": 2,
        "sha256": inline.sha256,
        "kept": "inline",
    }
    stored = EmbeddingResult(count=1000, dimensions=1536, sha256="a" * 64, object="acme.t1")
    details = _details(_completed(stored))
    assert details["embedding"] == {"count": 1000, "dimensions": 1536, "sha256": "a" * 64, "kept": "object"}
    assert "answer_chars" not in details
    assert "acme.t1" not in str(details)  # not the object's name


def test_a_count_the_executor_estimated_is_marked_and_a_counted_one_is_not() -> None:
    estimated = _completed(vectors.pack(b"\x00" * 8, count=1, dimensions=2))
    assert _details(estimated.model_copy(update={"usage_estimated": True}))["usage_estimated"] is True
    assert "usage_estimated" not in _details(estimated)
