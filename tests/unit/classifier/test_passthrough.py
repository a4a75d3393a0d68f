"""An embedding task is not classified: its classification is a pass-through, urgency from its metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchyard.classifier.classify import PASSTHROUGH, passthrough, task_text
from switchyard.common.events import EmbeddingRequest, TaskSubmitted

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def _task(texts: list[str], **kw: object) -> TaskSubmitted:
    return TaskSubmitted(
        task_id="e1",
        tenant_id="acme",
        request=EmbeddingRequest(model="openai/text-embedding-3-small", input=texts),
        submitted_at=NOW,
        **kw,
    )


def test_an_embedding_task_passes_through_as_the_embedding_type() -> None:
    c = passthrough(_task(["a corpus line"]), latency_ms=0.0123, now=NOW)
    assert (c.type, c.confidence, c.complexity, c.model_version) == ("embedding", 1.0, 0.0, PASSTHROUGH)
    assert c.latency_ms == 0.012 and c.scores == {} and not c.truncated


def test_its_urgency_reads_the_metadata_and_never_the_texts() -> None:
    urgent_words = ["URGENT: production is down, fix it ASAP"]
    calm = passthrough(_task(urgent_words), latency_ms=0, now=NOW)
    plain = passthrough(_task(["the weather was mild"]), latency_ms=0, now=NOW)
    assert calm.urgency == plain.urgency == 0.4  # a normal task: the corpus's words do not move it
    assert passthrough(_task(urgent_words, priority="low"), latency_ms=0, now=NOW).urgency == 0.15
    soon = _task(["x"], deadline=NOW + timedelta(seconds=5))
    assert passthrough(soon, latency_ms=0, now=NOW).urgency >= 0.95


def test_the_chat_only_text_reader_refuses_an_embedding_task() -> None:
    with pytest.raises(TypeError):
        task_text(_task(["x"]))


def test_the_task_apis_own_deadline_is_no_hurry() -> None:
    """A task API task or batch line (origin http, `timeout_from: started`) carries the gateway's deadline:
    the end of its following (SWITCHYARD_ASYNC_TASK_TIMEOUT_S), when nobody reads its result any more, not a
    client in a hurry. A bus submitter's deadline still is."""
    followed = {"timeout_from": "started", "deadline": NOW + timedelta(seconds=3600)}
    batch_line = _task(["x"], priority="low", origin="http", **followed)
    assert passthrough(batch_line, latency_ms=0, now=NOW).urgency == 0.15
    short = _task(["x"], origin="http", timeout_from="started", deadline=NOW + timedelta(seconds=30))
    assert passthrough(short, latency_ms=0, now=NOW).urgency == 0.4  # would race at 0.85
    from_bus = _task(["x"], priority="low", **followed)
    assert passthrough(from_bus, latency_ms=0, now=NOW).urgency == 0.5
