"""The batch-line fields of the task events are optional and additive: an event without them has the
bytes it had before they existed, an old event still reads, and a stored result's `bucket` names only the
batches' store, never alongside inline vectors."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from switchyard.common.envelope import decode, encode
from switchyard.common.events import EmbeddingRequest, EmbeddingResult, TaskSubmitted

pytestmark = pytest.mark.unit
DIGEST = hashlib.sha256(b"").hexdigest()


def _task(**extra: object) -> TaskSubmitted:
    return TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        request=EmbeddingRequest(model="local/all-minilm-l6-v2", input=["hi"]),
        submitted_at=datetime(2026, 12, 6, tzinfo=UTC),
        **extra,  # type: ignore[arg-type]
    )


def test_a_task_says_it_is_a_batch_line_only_when_it_is_one() -> None:
    plain = orjson.loads(encode(_task(), source="test")[1])["data"]
    assert plain == {
        "task_id": "t1",
        "tenant_id": "acme",
        "request": {"kind": "embedding", "model": "local/all-minilm-l6-v2", "input": ["hi"]},
        "priority": "normal",
        "origin": "bus",
        "submitted_at": "2026-12-06T00:00:00Z",
    }  # as before the field existed
    _, line = encode(_task(batch=True), source="test")
    assert orjson.loads(line)["data"]["batch"] is True
    assert decode(line, (TaskSubmitted,))[1].batch is True  # type: ignore[union-attr]


def test_a_stored_results_bucket_is_optional_and_only_the_batches_store() -> None:
    stored = EmbeddingResult(count=1, dimensions=1, sha256=DIGEST, object="acme.t1")
    assert "bucket" not in stored.model_dump(mode="json", exclude_none=True)
    kept = EmbeddingResult.model_validate({**stored.model_dump(), "bucket": "switchyard-batch-vectors"})
    assert kept.bucket == "switchyard-batch-vectors"
    with pytest.raises(ValidationError, match="bucket"):
        EmbeddingResult(count=1, dimensions=1, sha256=DIGEST, object="acme.t1", bucket="switchyard-files")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="inline vectors have none"):
        EmbeddingResult(
            count=1, dimensions=1, sha256=DIGEST, data="AAAAAA==", bucket="switchyard-batch-vectors"
        )
