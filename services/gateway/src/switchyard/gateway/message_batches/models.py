"""Anthropic's Message Batches objects, field for field (its SDK's `MessageBatch`, `DeletedMessageBatch`),
and the create request's checks (its documented limits)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from switchyard.gateway.batches.lines import MAX_MESSAGE_LINES
from switchyard.gateway.batches.models import Batch

MAX_LIST = 1000  # a page's `limit`, as Anthropic
ID_PREFIX = "msgbatch_"
# A message batch's results are kept this long after they are written (Anthropic: 29 days), then the batch
# too (the batches' bucket keeps a record 30 days after its last change); its requests, until it ends
# (`service.REQUESTS_KEEP_S`).
KEEP_S = 29 * 24 * 3600


class BatchRequest(BaseModel):
    custom_id: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    params: dict[str, Any]  # a Messages request: read by the Anthropic face as it runs


class CreateMessageBatch(BaseModel):
    requests: list[BatchRequest] = Field(min_length=1, max_length=MAX_MESSAGE_LINES)


class MessageBatchRequestCounts(BaseModel):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class MessageBatch(BaseModel):
    id: str
    type: Literal["message_batch"] = "message_batch"
    processing_status: Literal["in_progress", "canceling", "ended"]
    request_counts: MessageBatchRequestCounts
    created_at: str  # RFC 3339
    expires_at: str
    ended_at: str | None = None
    cancel_initiated_at: str | None = None
    archived_at: str | None = None
    results_url: str | None = None


class MessageBatchList(BaseModel):
    data: list[MessageBatch]
    has_more: bool
    first_id: str | None
    last_id: str | None


class DeletedMessageBatch(BaseModel):
    id: str
    type: Literal["message_batch_deleted"] = "message_batch_deleted"


def rfc3339(unix_s: int | None) -> str | None:
    if unix_s is None:
        return None
    return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z")


def message_batch(batch: Batch, *, base_url: str) -> MessageBatch:
    """The batch as Anthropic shows it: `in_progress` until it ends (validating, running, writing its
    results), `canceling` once cancelled until then; every request `processing` until the batch ends (as
    Anthropic: the other counts are zero until then), then each by its result, those it never ran
    `canceled` or `expired` by how it ended (an internal failure: `errored`)."""
    counts = batch.request_counts
    left = max(0, counts.total - counts.completed - counts.failed)
    tally = MessageBatchRequestCounts(succeeded=counts.completed, errored=counts.failed)
    ended_at = batch.completed_at or batch.cancelled_at or batch.expired_at or batch.failed_at
    if ended_at is None:
        tally = MessageBatchRequestCounts(processing=counts.total)
    elif batch.status == "cancelled":
        tally.canceled = left
    elif batch.status == "expired":
        tally.expired = left
    elif batch.status == "failed":
        tally.errored += left
    ended = ended_at is not None
    status = "ended" if ended else ("canceling" if batch.status == "cancelling" else "in_progress")
    return MessageBatch(
        id=batch.id,
        processing_status=status,
        request_counts=tally,
        created_at=rfc3339(batch.created_at) or "",
        expires_at=rfc3339(batch.expires_at) or "",
        ended_at=rfc3339(ended_at),
        cancel_initiated_at=rfc3339(batch.cancelling_at),
        results_url=f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
    )
