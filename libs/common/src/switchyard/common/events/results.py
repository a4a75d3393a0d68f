"""The task pipeline's outcomes: each provider call recorded, then the task completed, failed or timed
out (`tasks.py`: what comes before, submitted -> classified -> routed)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload
from switchyard.common.events.logprobs import TokenLogprob
from switchyard.common.events.reasoning import ThinkingBlock
from switchyard.common.events.tasks import ToolCall, Usage


class ProviderCallRecorded(EventPayload):
    EVENT_TYPE = "switchyard.provider.call.v1"
    SUBJECT = subjects.PROVIDER_CALL

    task_id: str
    tenant_id: str
    # the task's user: a billable call is theirs (the gateway counts it in their budget); null from
    # executors before this field, or a task of no user (a service key)
    user_id: str | None = None
    # the id of the task's API key (never its secret): per-key spend reconciles from billing's entries;
    # null from executors before this field, or a task submitted on the bus without one
    api_key_id: str | None = None
    attempt: int
    provider: str
    model: str
    outcome: str = Field(
        description="`ok`; `cancelled` (stopped by the executor: a parallel loser, a cancellation; billed on "
        "its estimated usage); `cut_short` (a `timeout` at a bound its task's deadline made shorter than "
        "the executor gives a call on its own: its client waits less than the model takes, or the "
        "deadline was nearly spent; billed for its prompt and any text sent, estimated, as a `timeout` "
        "of a call that went out is, and not held against the provider by breakers or the "
        "router's statistics); or an error kind of the executor's taxonomy (`timeout`, `overloaded`...)"
    )
    error: str | None = None
    latency_ms: float
    ttft_ms: float | None = None
    usage: Usage = Field(default_factory=Usage)
    # True when the tokens were spent but the answer was not the one delivered (a parallel loser, an
    # escalated cascade step): billing charges these calls; the delivered answer is charged by its result.
    billable: bool = False
    usage_estimated: bool = False  # the upstream reported no usage (e.g. a cancelled call): counted here


class CacheHit(BaseModel):
    """The gateway answered from its cache instead of a provider: no provider was called, and billing
    records the answer at zero provider cost with its tokens marked cached."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["exact", "semantic"]
    source_task_id: str  # the task whose answer was reused
    similarity: float | None = None  # semantic hits: cosine similarity of the two prompts


class ChargedCall(BaseModel):
    """A provider call billed besides a task's delivered answer: a parallel race's loser, a cascade step
    that failed its checks, a call cut by a cancellation (usage estimated). Billing charges each from its
    `ProviderCallRecorded` (`billable`); the outcome lists them, so that a budget counter settles at the
    same sum."""

    model: str
    usage: Usage


class Choice(BaseModel):
    """An answer beside a task's first, when the request asked for several (`n`)."""

    content: str
    finish_reason: str
    stop_sequence: str | None = None
    tool_calls: list[ToolCall] | None = None
    thinking: list[ThinkingBlock] | None = None
    logprobs: list[TokenLogprob] | None = None  # its tokens' log probabilities, when the request asked
    refusal: str | None = None  # as TaskCompleted's


class EmbeddingResult(BaseModel):
    """An embedding task's vectors: `count` rows of `dimensions` little-endian float32 numbers, row-major
    (row i is input i), with the SHA-256 of the raw bytes. Exactly one of `data` (the bytes in base64, in
    the event: small results) and `object` (the name of the object holding the raw bytes: large ones, kept
    for a while) is set; `bucket` is the JetStream object store holding `object` (absent:
    `switchyard-embeddings`; a batch line's: `switchyard-batch-vectors`, unless that one was full).
    `vectors.fetch` reads either."""

    count: int = Field(ge=1)
    dimensions: int = Field(ge=1)
    encoding: Literal["f32le"] = "f32le"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data: str | None = None
    object: str | None = Field(default=None, pattern=r"^[-_.a-zA-Z0-9]{1,255}$")
    bucket: subjects.VectorsBucket | None = None  # absent: switchyard-embeddings

    @model_validator(mode="after")
    def _sized(self) -> EmbeddingResult:
        if (self.data is None) == (self.object is None):
            raise ValueError("exactly one of data (inline vectors) and object (a stored object) is set")
        if self.bucket is not None and self.object is None:
            raise ValueError("bucket names where object is: inline vectors have none")
        if self.data is not None and len(self.data) != 4 * ((self.count * self.dimensions * 4 + 2) // 3):
            raise ValueError(f"data does not hold {self.count} x {self.dimensions} float32 numbers")
        return self


class TaskCompleted(EventPayload):
    EVENT_TYPE = "switchyard.task.completed.v1"

    task_id: str
    tenant_id: str
    user_id: str | None = None
    api_key_id: str | None = None
    model: str
    provider: str
    tier: str
    content: str
    finish_reason: str
    # The request's stop sequence that ended the answer, where the provider names it (Anthropic does;
    # OpenAI-compatible providers and the local model do not: their finish_reason is "stop" either way).
    stop_sequence: str | None = None
    usage: Usage
    # The upstream reported no usage (an OpenAI-compatible server that counts none, Gemini's batch
    # embeddings): `usage` is the executor's estimate, about four characters a token.
    usage_estimated: bool = False
    tool_calls: list[ToolCall] | None = None
    thinking: list[ThinkingBlock] | None = None  # the model's reasoning before `content` (Anthropic's)
    # The model's refusal instead of an answer (OpenAI's `refusal`: structured outputs it will not give),
    # kept apart from `content`, which is then empty: clients tell the two apart (LangChain raises
    # OpenAIRefusalError, pydantic-ai ContentFilterError) rather than parse a refusal as the answer.
    refusal: str | None = None
    attempts: int
    latency_ms: float
    # Wall time the executor spent waiting on provider calls (overlapping calls counted once): the gateway
    # subtracts it from its own time to report `x-switchyard-overhead-ms`.
    provider_ms: float | None = None
    completed_at: datetime
    cache: CacheHit | None = None  # set when the answer came from the gateway's cache (attempts: 0)
    charged: list[ChargedCall] = Field(default_factory=list)  # billed besides `usage`
    # The second to n-th answers of a request for several (`n`); `usage` counts them all, as the one
    # call that gave them was billed.
    other_choices: list[Choice] = Field(default_factory=list)
    # An embedding task's vectors (its `content` is empty, its finish reason "stop").
    embedding: EmbeddingResult | None = None
    # The first answer's token log probabilities, when the request asked (`logprobs`), in output order;
    # `logprobs_truncated`: the answers' entries were cut at MAX_LOGPROB_ENTRIES (the later tokens have none).
    logprobs: list[TokenLogprob] | None = None
    logprobs_truncated: bool = False


class TaskFailed(EventPayload):
    EVENT_TYPE = "switchyard.task.failed.v1"

    task_id: str
    tenant_id: str
    user_id: str | None = None
    error_code: str
    error_message: str
    attempts: int = 0
    failed_at: datetime
    charged: list[ChargedCall] = Field(default_factory=list)  # calls billed although the task failed
    # When the last provider said to come back (its Retry-After: rate limited, overloaded), in seconds, at
    # most the executor's SWITCHYARD_RETRY_AFTER_CLIENT_MAX_S (300 s; the message says when it was capped).
    retry_after_s: float | None = Field(default=None, ge=0)


class TaskTimedOut(EventPayload):
    EVENT_TYPE = "switchyard.task.timed_out.v1"
    SUBJECT = subjects.TASK_TIMED_OUT

    task_id: str
    tenant_id: str
    waited_ms: float
