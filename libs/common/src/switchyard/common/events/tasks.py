"""The task pipeline: submitted -> classified -> routed -> provider calls -> completed | failed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload

TaskType = Literal[
    "coding", "math", "reasoning", "writing", "extraction", "summarisation", "qa", "chitchat", "coordination"
]
TASK_TYPES: tuple[str, ...] = TaskType.__args__  # type: ignore[attr-defined]
Priority = Literal["low", "normal", "high"]
Strategy = Literal["single", "parallel", "cascade"]
ParallelMode = Literal["race", "best_of"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text, with content parts of type text joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatRequest(BaseModel):
    """What the client asked for, in OpenAI chat-completions terms (the lingua franca of the pipeline)."""

    model_config = ConfigDict(extra="ignore")

    model: str = "auto"
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    stream: bool = False
    response_format: dict[str, Any] | None = None  # OpenAI's {"type": "json_object" | "json_schema", ...}

    def prompt_text(self) -> str:
        return "\n".join(m.text() for m in self.messages)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TaskSubmitted(EventPayload):
    EVENT_TYPE = "switchyard.task.submitted.v1"
    SUBJECT = subjects.TASK_SUBMITTED

    task_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    tenant_id: str = Field(min_length=1, max_length=64)
    user_id: str | None = None
    api_key_id: str | None = None
    request: ChatRequest
    priority: Priority = "normal"
    deadline: datetime | None = None
    origin: Literal["http", "bus"] = "bus"
    submitted_at: datetime


class Classification(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: TaskType
    confidence: float = Field(ge=0, le=1)
    complexity: float = Field(ge=0, le=1)
    urgency: float = Field(ge=0, le=1)
    model_version: str
    latency_ms: float
    truncated: bool = False
    scores: dict[str, float] = Field(default_factory=dict)


class TaskClassified(EventPayload):
    EVENT_TYPE = "switchyard.task.classified.v1"
    SUBJECT = subjects.TASK_CLASSIFIED

    task: TaskSubmitted
    classification: Classification


class RouteCandidate(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str  # the policy's model id, "<provider>/<name>"
    provider: str
    upstream_model: str  # the name the provider knows it by
    tier: str
    estimated_cost_usd: float = 0.0


class RoutingDecision(BaseModel):
    """How to run a task. `single`: the candidates in order, each a fallback of the one before.
    `parallel`: the first `fan_out` candidates at once (a race, or best-of with a scorer), the rest as
    fallbacks. `cascade`: the candidates in order, the next one only when an answer fails `checks`."""

    model_config = ConfigDict(frozen=True)

    strategy: Strategy = "single"
    tier: str
    candidates: list[RouteCandidate] = Field(min_length=1)
    reasons: dict[str, Any] = Field(default_factory=dict)
    policy_version: str
    estimated_prompt_tokens: int = 0
    estimated_cost_usd: float = 0.0
    fan_out: int = Field(default=1, ge=1)
    parallel_mode: ParallelMode = "race"
    checks: list[str] = Field(default_factory=list)
    min_confidence: float = 0.0


class TaskRouted(EventPayload):
    EVENT_TYPE = "switchyard.task.routed.v1"
    SUBJECT = subjects.TASK_ROUTED

    task: TaskSubmitted
    classification: Classification
    decision: RoutingDecision


class ProviderCallRecorded(EventPayload):
    EVENT_TYPE = "switchyard.provider.call.v1"
    SUBJECT = subjects.PROVIDER_CALL

    task_id: str
    tenant_id: str
    attempt: int
    provider: str
    model: str
    outcome: str  # "ok" or an error kind of the executor's taxonomy
    error: str | None = None
    latency_ms: float
    ttft_ms: float | None = None
    usage: Usage = Field(default_factory=Usage)
    # True when the tokens were spent but the answer was not the one delivered (a parallel loser, an
    # escalated cascade step): billing charges these calls; the delivered answer is charged by its result.
    billable: bool = False
    usage_estimated: bool = False  # the upstream reported no usage (e.g. a cancelled call): counted here


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
    usage: Usage
    attempts: int
    latency_ms: float
    completed_at: datetime


class TaskFailed(EventPayload):
    EVENT_TYPE = "switchyard.task.failed.v1"

    task_id: str
    tenant_id: str
    user_id: str | None = None
    error_code: str
    error_message: str
    attempts: int = 0
    failed_at: datetime


class TaskTimedOut(EventPayload):
    EVENT_TYPE = "switchyard.task.timed_out.v1"
    SUBJECT = subjects.TASK_TIMED_OUT

    task_id: str
    tenant_id: str
    waited_ms: float
