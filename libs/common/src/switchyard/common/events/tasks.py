"""The task pipeline: submitted -> classified -> routed (then `results.py`: calls, completed | failed)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from switchyard.common import subjects
from switchyard.common.events.base import MAX_TOKENS, EventPayload, Money, TokenCount
from switchyard.common.events.logprobs import MAX_TOP_LOGPROBS
from switchyard.common.events.reasoning import EFFORT_BUDGETS as EFFORT_BUDGETS
from switchyard.common.events.reasoning import MIN_THINKING_BUDGET as MIN_THINKING_BUDGET
from switchyard.common.events.reasoning import DisplayedThinking as DisplayedThinking
from switchyard.common.events.reasoning import Reasoning as Reasoning
from switchyard.common.events.reasoning import ReasoningEffort as ReasoningEffort
from switchyard.common.events.reasoning import ThinkingBlock as ThinkingBlock

TaskType = Literal[
    "coding", "math", "reasoning", "writing", "extraction", "summarisation", "qa", "chitchat", "coordination"
]
TASK_TYPES: tuple[str, ...] = TaskType.__args__  # type: ignore[attr-defined]
Priority = Literal["low", "normal", "high"]
Strategy = Literal["single", "parallel", "cascade"]
ParallelMode = Literal["race", "best_of"]
# The most answers one request may ask for (`n`): Gemini's `candidateCount` takes up to 8.
MAX_CHOICES = 8
# The most texts one embedding request may hold (OpenAI's limit for `input`).
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_DIMENSIONS = 65536
# An embedding task's class: it is not classified (no type to learn), so its classification says this.
EMBEDDING = "embedding"


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = "{}"  # a JSON object, as a string (OpenAI's shape; adapters parse it)


class ToolCall(BaseModel):
    """A call the model asks the caller to make, in OpenAI's shape (every face and adapter maps to it)."""

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments
    strict: bool | None = None


class ToolSpec(BaseModel):
    """A tool the model may call, in OpenAI's shape."""

    type: Literal["function"] = "function"
    function: FunctionSpec


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # a `tool` turn: the result of that call
    thinking: list[ThinkingBlock] | None = None  # an assistant turn's reasoning, before its content

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

    # The request's kind on the bus (TaskSubmitted.request): absent on the wire (chat is the default, so a
    # chat task's bytes are what they were before embeddings), declared so the schema names it.
    kind: Literal["chat"] = Field(default="chat", exclude=True)
    model: str = "auto"
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    stream: bool = False
    stream_start: bool | None = Field(
        default=None,
        description="a stream's submitter reads a first chunk without output that names the model being "
        "called as the call starts (`seq` 0, `model` alone; its response may start before the first "
        "output). Gateways of this release set it. Absent: no such chunk is sent and the first output "
        "chunk names the model, as bus clients and previous gateways expect",
    )
    response_format: dict[str, Any] | None = None  # OpenAI's {"type": "json_object" | "json_schema", ...}
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None  # "auto", "none", "required" or a named function
    parallel_tool_calls: bool | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    reasoning: Reasoning | None = None
    # How many answers to the same messages (OpenAI's `n`): one call to a model that gives several
    # (the `choices` capability); the first is the task's `content`, the others its `other_choices`.
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    # The answer's token log probabilities (OpenAI's `logprobs`, and `top_logprobs` alternatives per
    # token): sent only to models with the `logprobs` capability; the result carries them per answer.
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    prompt_cache_key: str | None = Field(
        default=None,
        description="the client's key grouping requests that share a long prefix (OpenAI's "
        "`prompt_cache_key`), for the provider's prompt cache: sent to OpenAI as a digest of the task's "
        "tenant and this key, so that tenants never share a cache key and the key itself does not leave",
    )
    truncation: Literal["auto"] | None = Field(
        default=None,
        description="`auto`: a prompt too long for the context window of every model the task could go to "
        "loses its oldest turns (its leading system and developer messages kept; what is kept starts at a "
        "user's turn) until it fits the largest, as the Responses API's `truncation` does; absent: such a "
        "task fails `context_length_exceeded`",
    )

    def prompt_text(self) -> str:
        return "\n".join(m.text() for m in self.messages)

    def json_format(self) -> str | None:
        """`json_object` or `json_schema` when the client asked for JSON, else None."""
        kind = (self.response_format or {}).get("type")
        return kind if kind in ("json_object", "json_schema") else None

    def json_schema(self) -> dict[str, Any] | None:
        """The schema of a `json_schema` response format."""
        if self.json_format() != "json_schema":
            return None
        schema = ((self.response_format or {}).get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None

    def uses_tools(self) -> bool:
        """Tools are offered, or the conversation holds tool calls or results: a model must speak tools."""
        if self.tools and self.tool_choice != "none":
            return True
        return any(m.tool_calls or m.role == "tool" for m in self.messages)


class EmbeddingRequest(BaseModel):
    """Texts to turn into vectors (OpenAI's embeddings). The client names the model: vectors of different
    models cannot be compared, so there is no `auto` and a fallback goes only to a model of the same
    vector space (the policy's `embedding.space`). `dimensions` shortens the vectors of a model that can
    (OpenAI's text-embedding-3, Gemini's `outputDimensionality`)."""

    # `kind` is required on the wire (the union's tag: without it a request is chat), defaulted in code.
    model_config = ConfigDict(extra="ignore", json_schema_extra=lambda schema: _require(schema, "kind"))

    kind: Literal["embedding"] = "embedding"
    model: str = Field(min_length=1, max_length=200)
    input: list[str] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
    dimensions: int | None = Field(default=None, ge=1, le=MAX_EMBEDDING_DIMENSIONS)

    def prompt_text(self) -> str:
        return "\n".join(self.input)


def _require(schema: dict[str, Any], name: str) -> None:
    required = schema.setdefault("required", [])
    if name not in required:
        required.append(name)


def _request_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "embedding" if kind == "embedding" else "chat"


# What a task asks for: a chat completion (no `kind` on the wire) or embeddings (`kind: "embedding"`).
TaskRequest = Annotated[
    Annotated[ChatRequest, Tag("chat")] | Annotated[EmbeddingRequest, Tag("embedding")],
    Discriminator(_request_kind),
]


class Usage(BaseModel):
    """Tokens of one answer or call. `prompt_tokens` counts every input token, including those the
    provider read from its prompt cache (`cache_read_tokens`: OpenAI's `cached_tokens`, Anthropic's
    `cache_read_input_tokens`, Gemini's `cachedContentTokenCount`) and those it wrote to it
    (`cache_write_tokens`: Anthropic's `cache_creation_input_tokens`), which providers bill at their own
    prices (`ModelSpec.cached_input_per_1k`, `cache_write_per_1k`). `completion_tokens` counts every output
    token, including the model's reasoning (`reasoning_tokens`: OpenAI's `reasoning_tokens`, Gemini's
    `thoughtsTokenCount`), billed as output; absent (None) where the provider does not count them apart
    (Anthropic, the local model, a compatible server that says nothing of them, an estimate)."""

    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    reasoning_tokens: TokenCount | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def answer_tokens(self) -> int:
        """The output tokens besides the reasoning (all of them where the reasoning is not counted)."""
        return max(self.completion_tokens - (self.reasoning_tokens or 0), 0)


class TaskBudget(BaseModel):
    """What a hard budget (a finite daily, monthly or key budget of the task's principal) reserved for a
    chat task at its admission, so that its calls cannot spend more: the output cap of each answer at
    the dearest model that could serve it, and how many calls the reservation covers (a race's racers,
    a cascade's steps). Set by the gateway; absent: no hard budget, nothing capped."""

    model_config = ConfigDict(frozen=True)

    max_output_tokens: int = Field(
        ge=1,
        le=MAX_TOKENS,
        description="the most output tokens (thinking included) each answer may bring: every provider is "
        "sent the lower of this and the request's `max_tokens` (an answer it cuts ends with "
        "finish_reason `length`)",
    )
    calls: int = Field(
        default=1,
        ge=1,
        le=8,
        description="the billed calls the reservation covers: a race runs at most this many racers, a "
        "cascade at most this many checked steps (1: neither, a single call with fallbacks)",
    )
    model_caps: dict[str, int] = Field(
        default_factory=dict,
        description="a candidate model's own output cap (policy model id: tokens), where its price pays "
        "for more than `max_output_tokens` within the same one-call reservation (an answer capped near "
        "its budget's end): that model is sent up to it; any other model `max_output_tokens`",
    )


class TaskSubmitted(EventPayload):
    EVENT_TYPE = "switchyard.task.submitted.v1"
    SUBJECT = subjects.TASK_SUBMITTED

    task_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    tenant_id: str = Field(min_length=1, max_length=64)
    user_id: str | None = None
    api_key_id: str | None = None
    request: TaskRequest
    priority: Priority = "normal"
    deadline: datetime | None = Field(
        default=None,
        description="when the answer is wanted no longer, on the submitter's clock (that of `submitted_at`): "
        "it bounds the whole run, a stream's included, and counts the time the task waited for an "
        "executor; a task that reaches one past it is not run (`task_expired`)",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="how long the task may take until its answer (a stream: its first output), when its "
        "submitter says: the executor's budget for it instead of its own SWITCHYARD_TASK_DEADLINE_S (one "
        "provider call may take all of it when it is the longer), never past SWITCHYARD_STREAM_MAX_S nor "
        "`deadline`; counted from `submitted_at` unless `timeout_from` says `started`; absent: the "
        "executor's budget",
    )
    timeout_from: Literal["submitted", "started"] | None = Field(
        default=None,
        description="where the task's budget (`timeout_s`, else the executor's own) counts from. "
        "`submitted` (and absent): `submitted_at`, so the time it waited on the bus (a backlog, a "
        "redelivery) counts, and a task whose budget is spent when an executor takes it is not run "
        "(`task_expired`); but a bus task (`origin: bus`) without `timeout_s` has the executor's own "
        "budget from its start. `started`: the executor's start of it (a task nobody waits for on a "
        "connection, which may queue: a task API task, a batch line; `deadline` bounds its wait)",
    )
    origin: Literal["http", "bus"] = "bus"
    submitted_at: datetime = Field(
        description="when the submitter accepted the task, on a clock in sync with the executors' (a time "
        "without a zone is read as UTC): `timeout_s` and `deadline` count from it, so the time the task "
        "waits on the bus is spent of them"
    )
    allowed_models: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        max_length=100,
        description="the API key's model allow-list (ids or aliases; `auto` among them when the key may "
        "route): the router picks, falls back and escalates only among these; absent: every model",
    )
    budget: TaskBudget | None = Field(
        default=None,
        description="what its principal's hard budget reserved for a chat task (`TaskBudget`): each "
        "answer's output cap and the calls covered; absent: no hard budget",
    )
    batch: bool | None = Field(
        default=None,
        description="true: a line of a batch (the Batch API), read when the batch finishes, hours later; "
        "an embedding line's vectors too large for its result event are then kept in the object store "
        "`switchyard-batch-vectors` (days) rather than `switchyard-embeddings` (minutes); absent: not a "
        "batch line",
    )

    def chat(self) -> ChatRequest:
        """The request of a chat task; a TypeError for an embedding task (code that only chat reaches)."""
        if not isinstance(self.request, ChatRequest):
            raise TypeError(f"task {self.task_id} is an embedding task, not a chat task")
        return self.request

    def embedding(self) -> EmbeddingRequest | None:
        """The request of an embedding task, or None for a chat task."""
        return self.request if isinstance(self.request, EmbeddingRequest) else None


class Classification(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: TaskType | Literal["embedding"]  # "embedding": an embedding task, passed through unclassified
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
    estimated_cost_usd: Money = 0.0
    # The model takes a thinking budget or reasoning effort (the policy's `reasoning` capability, or a
    # model the client named that the policy does not list): the executor sends it the request's.
    reasoning: bool = False
    # An embedding task: the length of the vectors this candidate must return (the request's
    # `dimensions`, or the model's own); None when not known (a model the policy does not list).
    dimensions: int | None = Field(default=None, ge=1)
    # The model's context window (the policy's): a hard budget's output cap is fitted into what it leaves
    # after the prompt; None when not known (a model the policy does not list, a router before it).
    context_window: int | None = Field(default=None, ge=1)


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
    estimated_prompt_tokens: TokenCount = 0
    estimated_cost_usd: Money = 0.0
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
