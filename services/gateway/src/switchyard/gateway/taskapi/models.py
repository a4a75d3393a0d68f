"""The native task API's resources: a task's status and, once it is done, its result or error."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from switchyard.common.events import Choice, TaskBudget, ThinkingBlock, TokenLogprob, ToolCall

Status = Literal["queued", "completed", "failed", "cancelled", "timed_out"]
TERMINAL = ("completed", "failed", "cancelled", "timed_out")


class TaskUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cache_read_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it
    # of completion_tokens: the model's reasoning; null where the provider does not count it apart
    reasoning_tokens: int | None = None


class TaskResult(BaseModel):
    model: str
    tier: str
    content: str
    finish_reason: str
    usage: TaskUsage
    tool_calls: list[ToolCall] | None = None
    thinking: list[ThinkingBlock] | None = None  # the model's reasoning, when the request asked for it
    other_choices: list[Choice] = Field(default_factory=list)  # the 2nd to n-th answers (`n`)
    # The answer's token log probabilities, when the request asked (`logprobs`; each other answer's in
    # its choice), `bytes` null where they are the token's UTF-8; `logprobs_truncated`: the answers' entries
    # were cut at MAX_LOGPROB_ENTRIES (the later tokens have none).
    logprobs: list[TokenLogprob] | None = None
    logprobs_truncated: bool = False
    refusal: str | None = None  # the model's refusal instead of the answer (`content` is then empty)


class TaskError(BaseModel):
    code: str
    message: str


class TaskState(BaseModel):
    id: str
    object: Literal["task"] = "task"
    tenant_id: str
    user_id: str | None = None
    status: Status
    model: str
    created_at: datetime
    updated_at: datetime
    result: TaskResult | None = None
    error: TaskError | None = None
    idempotency_key: str | None = None
    # Kept with the stored task, never answered: a retry with the same Idempotency-Key must carry the
    # same body.
    request_sha256: str | None = Field(default=None, exclude=True)


class Claim(BaseModel):
    """An Idempotency-Key taken by the request that runs its body (`idempotency.claim_key`): the task it
    makes and that body's SHA-256. Written before the task is published, so racing requests agree on one
    body; kept in the tasks bucket (never answered: its key is no task id)."""

    task_id: str
    request_sha256: str
    claimed_at: datetime
    unsent: bool = False  # its publishing failed: the next request with its body may take it over at once
    # Its publishing's ack was lost (`tasks.AckLost`): the stream may hold its task, published under
    # `event_id`; a retry within the duplicate window publishes it again under that id, with `budget`
    # (the first request's hard-budget caps) and no admission of its own (`keyed`).
    uncertain: bool = False
    event_id: str | None = None
    budget: TaskBudget | None = None
