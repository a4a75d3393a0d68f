from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchyard.audit.digests import TenantKey, keyed
from switchyard.audit.entries import draft_for
from switchyard.common import vectors
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import EmbeddingResult, TaskCompleted, Usage

pytestmark = pytest.mark.unit
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
KEY = TenantKey("acme", b"k" * 32)


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
    return draft_for(event, payload, KEY).details


def test_the_vectors_are_recorded_by_keyed_digest_and_where_they_were_kept() -> None:
    inline = vectors.pack(b"\x00" * 16, count=2, dimensions=2)
    assert _details(_completed(inline))["embedding"] == {
        "count": 2,
        "dimensions": 2,
        "hmac_sha256": keyed(KEY, bytes.fromhex(inline.sha256)),
        "kept": "inline",
    }
    # Not the vectors' plain SHA-256: a public model's vectors of a guessed input would confirm it.
    assert inline.sha256 not in str(_details(_completed(inline)))
    stored = EmbeddingResult(count=1000, dimensions=1536, sha256="a" * 64, object="acme.t1")
    details = _details(_completed(stored))
    digest = keyed(KEY, b"\xaa" * 32)
    assert details["embedding"] == {
        "count": 1000,
        "dimensions": 1536,
        "hmac_sha256": digest,
        "kept": "object",
    }
    assert "answer_chars" not in details
    assert "acme.t1" not in str(details)  # not the object's name


def test_a_count_the_executor_estimated_is_marked_and_a_counted_one_is_not() -> None:
    estimated = _completed(vectors.pack(b"\x00" * 8, count=1, dimensions=2))
    assert _details(estimated.model_copy(update={"usage_estimated": True}))["usage_estimated"] is True
    assert "usage_estimated" not in _details(estimated)
