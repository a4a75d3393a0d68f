"""OpenAI's batch object and its request, and the record the gateway keeps of a batch (KV)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from switchyard.common.events import Usage

Status = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
TERMINAL: tuple[Status, ...] = ("failed", "completed", "expired", "cancelled")
# What the runner takes up: a batch to validate, to run, to finish or to cancel.
ACTIVE: tuple[Status, ...] = ("validating", "in_progress", "finalizing", "cancelling")
COMPLETION_WINDOW_S = 24 * 3600
MAX_METADATA = 16  # pairs, as OpenAI
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class ExpiresAfter(BaseModel):
    """When the batch's output and error files expire: `seconds` after they are made (OpenAI's anchor
    `created_at`; an hour to 30 days, as a file upload's `expires_after`)."""

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=30 * 24 * 3600)


class CreateBatch(BaseModel):
    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: ExpiresAfter | None = None

    @field_validator("metadata")
    @classmethod
    def _openai_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_METADATA:
            raise ValueError(f"at most {MAX_METADATA} key-value pairs")
        for key, item in value.items():
            if len(key) > MAX_METADATA_KEY:
                raise ValueError(f"keys are at most {MAX_METADATA_KEY} characters ({key[:20]!r}...)")
            if len(item) > MAX_METADATA_VALUE:
                raise ValueError(f"values are at most {MAX_METADATA_VALUE} characters (key {key!r})")
        return value


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    """OpenAI's batch `usage`: the tokens of the lines answered, written when the batch ends."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0

    def add(self, usage: Usage) -> None:
        self.input_tokens += usage.prompt_tokens
        self.input_tokens_details.cached_tokens += usage.cache_read_tokens
        self.output_tokens += usage.completion_tokens
        self.output_tokens_details.reasoning_tokens += usage.reasoning_tokens or 0
        self.total_tokens += usage.prompt_tokens + usage.completion_tokens


class Batch(BaseModel):
    """OpenAI's batch object, field for field."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str = "24h"
    status: Status
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    metadata: dict[str, str] | None = None
    usage: BatchUsage | None = None  # once it ended (null while it runs, as OpenAI's before its end)


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Runner(BaseModel):
    """Which gateway replica runs the batch, until when (unix seconds) unless it renews."""

    owner: str
    until: float


class BatchRecord(BaseModel):
    """What the gateway stores of a batch: the object it answers, who submitted it (to admit its lines
    as theirs when they run: re-resolved then, so a key revoked meanwhile stops the rest), the runner's
    lease, and how far it got (`done_below`: every line before it has its result, counted in `below`)."""

    batch: Batch
    tenant_id: str
    user_id: str | None
    api_key_id: str
    runner: Runner | None = None
    output_expires_s: int | None = None  # the output and error files expire this long after they are made
    # the output and error files' ids, chosen before they are written: a replica that writes them again
    # (it took the batch over from one that died before recording them) replaces them, leaves no orphan
    results_files: list[str] | None = None
    idempotency_claim: str | None = None  # its create's Idempotency-Key claim (`idempotent`), purged with it
    done_below: int = 0
    below: RequestCounts = Field(default_factory=RequestCounts)  # the results of the lines before it


class LineError(BaseModel):
    """A line that never became a task (refused by its admission, its guardrails, its key), as the
    endpoint would have answered it."""

    status: int
    type: str
    code: str
    message: str
    param: str | None = None
