from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from switchyard.common.config import CommonSettings
from switchyard.gateway.cache.models import CacheRule
from switchyard.gateway.limits.models import Limits

MAX_BODY_SETTING = "SWITCHYARD_MAX_BODY_BYTES"  # `max_body_bytes`, as a 413 names it


class GatewaySettings(CommonSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_reuse_port: bool = Field(
        default=False, description="bind with SO_REUSEPORT, so several gateway processes share the port"
    )
    task_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="how long a request waits for its task's answer, or a stream for its first output",
    )
    request_timeout_max_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="the longest a client may have its request run by saying how long it waits "
        "(x-switchyard-timeout, or its SDK's own timeout header: 600 s by default in OpenAI's and "
        "Anthropic's), and what a task API task or a batch line may run; the SWITCHYARD_TASK_TIMEOUT_S "
        "wait applies when a client says nothing",
    )
    # A stream that has started is read as long as it flows: these outlast the executor's own bounds
    # (SWITCHYARD_STREAM_IDLE_S, SWITCHYARD_STREAM_MAX_S), so its cut, with its reason, comes first.
    stream_idle_timeout_s: float = Field(
        default=150.0,
        gt=0,
        description="a started stream whose next chunk takes this long is ended (task_timeout)",
    )
    stream_max_timeout_s: float = Field(
        default=3660.0, gt=0, description="a stream still running this long is ended (task_timeout)"
    )
    stream_keepalive_s: float = Field(
        default=15.0,
        ge=0,
        description="a stream silent this long gets a keep-alive its clients skip, so that proxies do not "
        "close it as idle (keepalive.py); 0: none",
    )
    # Sized for coding agents (Claude Code, Codex, Cursor): a session near a 200k-token context is ~0.8 MB
    # of JSON and ~1M characters, with screenshots of 1-3 MB each. A body travels as one task on the bus:
    # this default stays under the bus's max_payload as shipped (8 MiB) with room for what the pipeline
    # adds; a task that still does not fit gets 413 `bus_max_payload_exceeded` (tasks.TaskClient).
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024 - 256 * 1024, gt=0, description="larger bodies get 413 request_too_large"
    )
    # The bytes of bodies one replica takes in at once (read, parsed and admitted; `intake`): sized for the
    # shipped 512 MiB pod limit (docs/performance.md, "Requests in flight"); 0: no limit.
    max_body_bytes_reading: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        description="past it, a request waits up to 10 s for room, then gets 503 gateway_busy",
    )
    max_prompt_chars: int = Field(
        default=1_000_000, gt=0, description="prompts with more text get 413 prompt_too_large"
    )
    async_task_timeout_s: float = Field(
        default=3600.0, gt=0, description="how long the task API follows a submitted task before `timed_out`"
    )
    idempotency_secret: SecretStr | None = Field(
        default=None,
        description="seals the Idempotency-Key body digests kept in the bus (HMAC-SHA256), the same on every "
        "replica; default: derived from the gateway's NATS password, else <var_dir>/idempotency.key",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='browser origins allowed to call the API, e.g. ["https://app.example.com"] ("*": any); '
        "empty (the default): no CORS headers, so browsers refuse cross-origin calls",
    )
    # Files API (/v1/files): one upload's limit (its own: `max_body_bytes` does not apply), and the
    # object store's for all files together (a full store refuses uploads: 507 `files_storage_full`).
    files_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0, description="larger uploads get 413")
    files_bucket_bytes: int = Field(
        default=4 * 1024**3, gt=0, description="the files object store's size limit, all organisations"
    )
    files_org_bytes: int = Field(
        default=1024**3, gt=0, description="one organisation's files; an upload past it gets 507"
    )
    files_org_count: int = Field(
        default=10_000, gt=0, description="one organisation's files, counted; an upload past it gets 507"
    )
    files_batch_expires_s: int = Field(
        default=30 * 24 * 3600,
        ge=0,
        description="an upload (purpose batch) without expires_after expires this long after it is made, as "
        "OpenAI's do (30 days); 0: kept until deleted",
    )
    # Batches (/v1/batches): each line runs as a low-priority task; a replica runs at most
    # `batch_max_running` batches, each with at most `batch_concurrency` lines in flight.
    batch_concurrency: int = Field(default=8, ge=1, description="a batch's lines in flight at once")
    batch_max_running: int = Field(default=4, ge=1, description="batches one gateway replica runs at once")
    batch_lease_s: float = Field(
        default=30.0, ge=1.0, description="a batch whose runner's lease is this old is taken over by another"
    )
    batch_scan_s: float = Field(default=5.0, gt=0, description="how often a replica looks for batches to run")
    batch_org_unfinished: int = Field(
        default=10, ge=1, description="an organisation's batches not finished yet; one more gets 429"
    )
    batch_poll_s: float = Field(default=1.0, gt=0, description="how often a running line's task is read")
    batch_interactive_share: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="the share of an organisation's concurrent tasks its batch lines leave free for its "
        "interactive requests (enforced across replicas)",
    )
    batch_vectors_bytes: int = Field(
        default=1024**3,
        gt=0,
        description="the object store switchyard-batch-vectors: embedding lines' large vectors, kept until "
        "their batch's output file holds them",
    )
    # Responses API: responses are stored (unless a request says `store: false`) so that a later request can
    # continue them (`previous_response_id`, `item_reference`) and GET/DELETE /v1/responses/{id} reach them.
    responses_store: bool = Field(
        default=True, description="store Responses API responses; false: none is, and what needs them is 400"
    )
    responses_keep_s: float = Field(
        default=30 * 24 * 3600.0, gt=0, description="how long a stored response is kept (OpenAI: 30 days)"
    )
    responses_bucket_bytes: int = Field(
        default=1024**3,
        gt=0,
        description="the KV bucket switchyard-responses' size limit, all organisations (full: answers go out "
        "unstored, `store: false`)",
    )
    responses_org_bytes: int | None = Field(
        default=None,
        gt=0,
        description="what one organisation may hold of switchyard-responses (unset: a quarter of "
        "SWITCHYARD_RESPONSES_BUCKET_BYTES; over it: its answers go out unstored, `store: false`)",
    )
    # Responses API WebSocket mode (`responses_ws`): a connection is closed once it has lasted this long
    # (at the end of the response it is answering; OpenAI's connections last up to 60 minutes).
    responses_ws_max_s: float = Field(
        default=3600.0, gt=0, description="how long a Responses WebSocket connection lasts (OpenAI: 60 min)"
    )
    # ... and once it has waited this long for a frame with no response under way: an idle connection
    # holds its latest response (up to `responses_ws_kept_bytes`) for nothing
    responses_ws_idle_s: float = Field(
        default=600.0, gt=0, description="how long a Responses WebSocket connection may idle"
    )
    # Streams (`stream_id`) one connection runs at once (each its responses in order), and whose latest
    # responses it keeps
    responses_ws_streams: int = Field(
        default=8, ge=1, description="streams one Responses WebSocket connection runs at once"
    )
    # Connections one API key may hold open on one replica at once: past it, the handshake gets 429.
    responses_ws_per_key: int = Field(
        default=16, ge=1, description="Responses WebSocket connections one key may hold open (per replica)"
    )
    # The most of a response (its whole input and output, as JSON) a connection keeps to be continued:
    # a larger one is continued only from the stored responses (`store` true).
    responses_ws_kept_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="the largest response a Responses WebSocket connection keeps in memory",
    )
    auth_cache_ttl_s: float = 30.0
    tenant_sync_s: float = Field(
        default=300.0,
        gt=0,
        description="how often the tenant registry the pipeline reads is brought back to the database's "
        "organisations (also at start, and on each creation and erasure)",
    )
    readiness_timeout_s: float = 1.0
    stop_unready_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="after SIGTERM, how long the gateway goes on taking connections while /readyz answers "
        "503 `stopping`, so load balancers checking it stop sending requests before its listening socket "
        "closes; the stop grace (SWITCHYARD_STOP_GRACE_S) starts after it",
    )
    providers_refresh_s: float = 2.0

    # Rate limits and quotas (defaults: the product plan), shared by every replica through JetStream KV.
    limits_enabled: bool = True
    limit_user_requests_per_min: int = Field(default=100, ge=0)
    limit_user_tokens_per_day: int = Field(default=1_000_000, ge=0)
    limit_org_requests_per_min: int = Field(default=1_000, ge=0)
    limit_org_tokens_per_day: int = Field(default=10_000_000, ge=0)
    limit_org_concurrent_tasks: int = Field(default=20, ge=0)
    limit_global_requests_per_min: int = Field(default=10_000, ge=0)
    limit_user_counts_per_min: int = Field(
        default=600, ge=0, description="token counts (/v1/messages/count_tokens) per user and minute"
    )
    concurrency_slot_ttl_s: float = Field(
        default=30.0, gt=0, description="a crashed replica's concurrency slots come back after this long"
    )
    replica_ttl_s: float = Field(
        default=10.0,
        ge=1.0,
        description="a gateway replica whose in-flight list is this old is taken for dead: another settles "
        "the tasks it admitted (their reserved tokens and spend) once their results come",
    )
    # Budgets: daily per user by plan, monthly per organisation (set through the admin API).
    budgets_enabled: bool = True
    budget_free_daily_usd: float = Field(default=0.50, ge=0)
    budget_pro_daily_usd: float = Field(default=10.0, ge=0)
    budget_default_max_tokens: int = Field(
        default=4096, gt=0, description="output tokens reserved for a request that sets no max_tokens"
    )

    # Guardrails (guardrails/): these are the defaults; SWITCHYARD_GUARDRAILS_PATH names a YAML file that
    # overrides them by plan and by tenant (`defaults:`, `plans: {free: ...}`, `tenants: {<id>: ...}`).
    guardrails_enabled: bool = True
    guardrails_path: Path | None = None
    guardrail_injection: Literal["off", "refuse"] = "refuse"
    guardrail_pii: Literal["off", "redact", "refuse"] = "off"
    guardrail_pii_output: bool = False
    guardrail_max_prompt_tokens: int | None = Field(default=None, gt=0)

    # Response cache (cache/): off unless enabled. `cache_plans` / `cache_tenants` (JSON) override these
    # defaults by plan, then by tenant id: {"free": {"semantic": false, "ttl_s": 600}}.
    cache_enabled: bool = False
    cache_semantic: bool = Field(default=True, description="semantic lookups (when the cache is on)")
    cache_ttl_s: float = Field(default=3600.0, gt=0, description="how long an answer is reused")
    cache_max_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0, description="the KV bucket's max age")
    cache_semantic_threshold: float = Field(default=0.92, gt=0, le=1, description="min cosine similarity")
    cache_semantic_multi_turn: bool = False
    cache_semantic_tools: bool = False
    cache_plans: dict[str, CacheRule] = Field(default_factory=dict)
    cache_tenants: dict[str, CacheRule] = Field(default_factory=dict)
    qdrant_url: str | None = Field(default=None, description="a Qdrant server; unset: embedded Qdrant Edge")
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = "switchyard_cache"
    models_dir: Path | None = Field(default=None, description="root of the built ONNX embedding model")
    cache_build_models: bool = Field(default=True, description="build the ONNX files on start if missing")

    # Key guessing: repeated authentication failures from one client address, or against one API-key
    # prefix, within a window are answered 429 until the window ends (shared by replicas via KV).
    auth_lockout_enabled: bool = True
    auth_lockout_window_s: int = Field(default=300, gt=0)
    auth_lockout_client_failures: int = Field(default=50, gt=0)
    auth_lockout_prefix_failures: int = Field(default=20, gt=0)

    # OIDC single sign-on (off unless an issuer is set): bearer JWTs from this issuer, for this audience.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = Field(default=None, description="default: from the issuer's discovery")
    oidc_algorithms: str = Field(default="RS256 ES256 EdDSA", description="space-separated allow-list")
    oidc_leeway_s: float = Field(default=30.0, ge=0, le=300)
    oidc_org_claim: str = "org"
    oidc_org_match: Literal["name", "id"] = "name"
    oidc_role_claim: str = "role"
    oidc_default_role: Literal["admin", "member", "auditor", "billing"] = "member"
    oidc_email_claim: str = "email"
    oidc_create_users: bool = False
    oidc_link_verified_only: bool = Field(
        default=False,
        description="link an existing user to an account at its first login only when the token says "
        "email_verified: true (off: an absent claim links too; some providers, Azure AD's, never send it)",
    )
    oidc_jwks_max_age_s: float = Field(default=3600.0, gt=0)
    oidc_jwks_min_refresh_s: float = Field(default=30.0, ge=0)

    @field_validator("idempotency_secret")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("at least 32 characters (e.g. `openssl rand -base64 32`)")
        return v

    @model_validator(mode="after")
    def _streams_outlast_their_first_wait(self) -> GatewaySettings:
        if self.request_timeout_max_s < self.task_timeout_s:
            raise ValueError(
                f"SWITCHYARD_REQUEST_TIMEOUT_MAX_S ({self.request_timeout_max_s:g}) is shorter than "
                f"SWITCHYARD_TASK_TIMEOUT_S ({self.task_timeout_s:g}): a request whose SDK says how long "
                "it waits (OpenAI's and Anthropic's always do) would be waited for less than one that says "
                "nothing"
            )
        if self.stream_max_timeout_s < self.task_timeout_s:
            raise ValueError(
                f"SWITCHYARD_STREAM_MAX_TIMEOUT_S ({self.stream_max_timeout_s:g}) is shorter than "
                f"SWITCHYARD_TASK_TIMEOUT_S ({self.task_timeout_s:g}), the wait for a stream's first output"
            )
        if self.stream_max_timeout_s < self.request_timeout_max_s:
            raise ValueError(
                f"SWITCHYARD_STREAM_MAX_TIMEOUT_S ({self.stream_max_timeout_s:g}) is shorter than "
                f"SWITCHYARD_REQUEST_TIMEOUT_MAX_S ({self.request_timeout_max_s:g}), the longest wait for a "
                "stream's first output a client may ask"
            )
        if self.async_task_timeout_s < self.request_timeout_max_s:
            raise ValueError(
                f"SWITCHYARD_ASYNC_TASK_TIMEOUT_S ({self.async_task_timeout_s:g}) is shorter than "
                f"SWITCHYARD_REQUEST_TIMEOUT_MAX_S ({self.request_timeout_max_s:g}), what a task API task "
                "may run: it would be reported timed out while it runs"
            )
        return self

    def limits(self) -> Limits:
        return Limits(
            user_requests_per_min=self.limit_user_requests_per_min,
            user_tokens_per_day=self.limit_user_tokens_per_day,
            org_requests_per_min=self.limit_org_requests_per_min,
            org_tokens_per_day=self.limit_org_tokens_per_day,
            org_concurrent_tasks=self.limit_org_concurrent_tasks,
            global_requests_per_min=self.limit_global_requests_per_min,
            user_counts_per_min=self.limit_user_counts_per_min,
            batch_interactive_share=self.batch_interactive_share,
        )

    def plan_daily_usd(self) -> dict[str, float | None]:
        return {"free": self.budget_free_daily_usd, "pro": self.budget_pro_daily_usd, "enterprise": None}
