"""The bus contract for other systems: every channel, who publishes it, who consumes it, and its payload.

`switchyard asyncapi` renders this as an AsyncAPI 3.0 document (docs/asyncapi.yaml); a test keeps the
committed document equal to what this code generates.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from switchyard.common import subjects
from switchyard.common.billing_rpc import (
    CreatedWebhook,
    Forecast,
    ForecastQuery,
    SavingsQuery,
    SavingsReport,
    Statement,
    StatementQuery,
    UsageQuery,
    UsageReport,
    Webhook,
    WebhookCreate,
    WebhookList,
    WebhookRef,
    Webhooks,
)
from switchyard.common.events import (
    AdminActionRecorded,
    AuthFailureRecorded,
    BudgetAlert,
    GuardrailTriggered,
    ProviderCallRecorded,
    TaskCancelled,
    TaskClassified,
    TaskCompleted,
    TaskFailed,
    TaskFeedback,
    TaskRouted,
    TaskSubmitted,
    TaskTimedOut,
    UsageRecorded,
)
from switchyard.common.ledger_rpc import (
    CheckpointDocument,
    CheckpointRequest,
    ConsistencyProof,
    ConsistencyRequest,
    DigestReply,
    DigestRequest,
    InclusionProof,
    InclusionRequest,
    RpcErrorReply,
)
from switchyard.common.streaming import Chunk


@dataclass(frozen=True)
class Channel:
    name: str
    address: str
    description: str
    messages: tuple[type[BaseModel], ...]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    cloudevent: bool = True  # chunks are plain JSON on core NATS


CHANNELS: tuple[Channel, ...] = (
    Channel(
        "taskSubmitted",
        subjects.TASK_SUBMITTED,
        "Submit a task. Other systems publish here exactly as the gateway does (JetStream, stream "
        f"{subjects.STREAM_EVENTS}); set `Nats-Msg-Id` to the CloudEvent id so that a retried publish is "
        "de-duplicated (by the server for 2 minutes; after that the executor runs no task whose result is on "
        "the stream and sends that result again, the same event). `tenant_id` is an organisation's id: a "
        "task of one the tenant registry (KV "
        f"`{subjects.KV_TENANTS}`, kept by the gateway or `switchyard tenants`) does not list, or lists as "
        "erased, is refused by the classifier (and by the executor, for a routed task that skipped it): "
        "dead-lettered and answered on its result subject with `switchyard.task.failed.v1`, `error_code` "
        "`unknown_tenant`; never sent to a provider nor billed.",
        (TaskSubmitted,),
        ("gateway", "external systems"),
        ("classifier", "audit"),
    ),
    Channel(
        "taskSubmittedScoped",
        f"{subjects.TASK_SUBMITTED}.{{tenant_token}}",
        "Submit a task as a system scoped to some tenants (a NATS user made with `--integrator NAME "
        "--tenant T`, which may publish only here): `tenant_token` is the first 16 hex digits of the "
        "SHA-256 of the tenant id (UTF-8). A task whose `tenant_id` has another token is not run: "
        "dead-lettered (`tenant_mismatch`) and answered with `switchyard.task.failed.v1`, `error_code` "
        "`tenant_mismatch`, on the result subject of the subject's tenant (where the tenant registry lists "
        "it), never the named tenant's; neither is billed.",
        (TaskSubmitted,),
        ("external systems",),
        ("classifier", "audit"),
    ),
    Channel(
        "taskClassified",
        subjects.TASK_CLASSIFIED,
        "The task with its type, complexity, urgency and the classifier's model version.",
        (TaskClassified,),
        ("classifier",),
        ("router", "audit"),
    ),
    Channel(
        "taskRouted",
        subjects.TASK_ROUTED,
        "The routing decision: strategy, ordered candidate chain, cost estimate and reasons.",
        (TaskRouted,),
        ("router",),
        ("executor", "audit"),
    ),
    Channel(
        "providerCall",
        subjects.PROVIDER_CALL,
        "One call to a provider: outcome (ok, cancelled, cut_short or an error kind), latency, tokens. "
        "`billable` calls (a parallel loser, a cascade step refused by a quality check) are charged by "
        "billing; the router learns each model's EMA success and latency from those whose outcome says "
        "something about the provider (not cancelled, cut_short nor the request's own errors).",
        (ProviderCallRecorded,),
        ("executor",),
        ("router", "billing", "audit"),
    ),
    Channel(
        "taskResult",
        f"{subjects.RESULT_PREFIX}.{{tenant_token}}.{{task_id}}",
        "The task's outcome. Subscribe to `switchyard.result.<tenant_token>.<task_id>` (core NATS, before "
        "publishing the task; `tenant_token` as on `task.submitted.{tenant_token}`) or read it from the "
        "stream with a consumer filtered on `switchyard.result.>` (a user with JetStream reads; an "
        "integrator through its own durable consumer `<user>-<tenant_token>` on "
        "`switchyard.result.<tenant_token>.*`, so results published while it was away wait for it).",
        (TaskCompleted, TaskFailed),
        ("executor", "router"),
        ("gateway", "billing", "audit", "external systems"),
    ),
    Channel(
        "taskChunks",
        f"{subjects.CHUNK_PREFIX}.{{tenant_token}}.{{task_id}}",
        "Streamed text of a task submitted with `request.stream = true`, on core NATS (not stored): JSON "
        "objects with a gapless `seq`; the stored result event follows the last chunk.",
        (Chunk,),
        ("executor",),
        ("gateway", "external systems"),
        cloudevent=False,
    ),
    Channel(
        "taskTimedOut",
        subjects.TASK_TIMED_OUT,
        "The gateway gave up waiting for a task's result (its client got a 504). Every executor replica "
        "hears it from the stream (its own ordered consumer, which a starting replica replays from 10 "
        "minutes back), as a cancellation: the task is stopped if it runs, skipped when it comes.",
        (TaskTimedOut,),
        ("gateway",),
        ("executor", "audit"),
    ),
    Channel(
        "usageRecorded",
        subjects.USAGE_RECORDED,
        "A completed task priced into a usage entry.",
        (UsageRecorded,),
        ("billing",),
        ("audit",),
    ),
    Channel(
        "budgetAlert",
        subjects.BUDGET_ALERT,
        "Billed spend passed 50, 80 or 100 % of a user's daily or an organisation's monthly budget: once per "
        "threshold, account and period (the event id is derived from them). Billing also delivers it to the "
        "organisation's signed webhooks.",
        (BudgetAlert,),
        ("billing",),
        ("billing", "audit", "external systems"),
    ),
    Channel(
        "adminAction",
        subjects.ADMIN_ACTION,
        "A change made through the gateway's admin API (organisation, user, API key, emergency throttle): "
        "who, on which tenant, what changed. Never carries a key or secret.",
        (AdminActionRecorded,),
        ("gateway",),
        ("audit", "classifier"),
    ),
    Channel(
        "billingUsage",
        subjects.BILLING_RPC_USAGE,
        "Core NATS request/reply: an organisation's usage, filtered (dates, user, model, tier) and grouped; "
        "scoped to the request's `tenant_id`.",
        (UsageQuery, UsageReport, RpcErrorReply),
        ("gateway",),
        ("billing",),
        cloudevent=False,
    ),
    Channel(
        "billingStatement",
        subjects.BILLING_RPC_STATEMENT,
        "Core NATS request/reply: an organisation's monthly statement, reconciled with its usage entries; "
        "scoped to the request's `tenant_id`.",
        (StatementQuery, Statement, RpcErrorReply),
        ("gateway",),
        ("billing",),
        cloudevent=False,
    ),
    Channel(
        "billingSavings",
        subjects.BILLING_RPC_SAVINGS,
        "Core NATS request/reply: what was paid against always-premium routing; "
        "scoped to the request's `tenant_id`.",
        (SavingsQuery, SavingsReport, RpcErrorReply),
        ("gateway",),
        ("billing",),
        cloudevent=False,
    ),
    Channel(
        "billingForecast",
        subjects.BILLING_RPC_FORECAST,
        "Core NATS request/reply: the month-end cost forecast and spend anomaly flags; "
        "scoped to the request's `tenant_id`.",
        (ForecastQuery, Forecast, RpcErrorReply),
        ("gateway",),
        ("billing",),
        cloudevent=False,
    ),
    Channel(
        "billingWebhookCreate",
        subjects.BILLING_RPC_WEBHOOK_CREATE,
        "Core NATS request/reply: add a budget-alert webhook endpoint (the answer holds its secret, once); "
        "scoped to the request's `tenant_id`.",
        (WebhookCreate, CreatedWebhook, RpcErrorReply),
        ("gateway",),
        ("billing",),
        cloudevent=False,
    ),
    Channel(
        "billingWebhookList",
        subjects.BILLING_RPC_WEBHOOK_LIST,
        "Core NATS request/reply: an organisation's webhook endpoints (never their secrets); "
        "scoped to the request's `tenant_id`.",
        (WebhookList, Webhooks, RpcErrorReply),
        ("gateway",),
        ("billing",),
        cloudevent=False,
    ),
    Channel(
        "billingWebhookDelete",
        subjects.BILLING_RPC_WEBHOOK_DELETE,
        "Core NATS request/reply: remove a webhook endpoint; scoped to the request's `tenant_id`.",
        (WebhookRef, Webhook, RpcErrorReply),
        ("gateway",),
        ("billing",),
        cloudevent=False,
    ),
    Channel(
        "ledgerCheckpoint",
        subjects.LEDGER_RPC_CHECKPOINT,
        "Core NATS request/reply: the latest (or a given) signed checkpoint of the audit ledger.",
        (CheckpointRequest, CheckpointDocument, RpcErrorReply),
        ("gateway", "external systems"),
        ("audit",),
        cloudevent=False,
    ),
    Channel(
        "ledgerInclusion",
        subjects.LEDGER_RPC_INCLUSION,
        "Core NATS request/reply: an inclusion proof of one ledger entry in a signed checkpoint; "
        "`tenant_id` is required, and another tenant's entry is refused (`forbidden`).",
        (InclusionRequest, InclusionProof, RpcErrorReply),
        ("gateway", "external systems"),
        ("audit",),
        cloudevent=False,
    ),
    Channel(
        "ledgerDigest",
        subjects.LEDGER_RPC_DIGEST,
        "Core NATS request/reply: a tenant's keyed digest (HMAC-SHA256 under its key) of a text, an "
        "embedding's inputs or vectors, as its ledger entries hold it; with `seq`, whether that entry (the "
        "tenant's own, else `forbidden`) holds it. `key_erased` once the organisation was erased.",
        (DigestRequest, DigestReply, RpcErrorReply),
        ("gateway",),
        ("audit",),
        cloudevent=False,
    ),
    Channel(
        "ledgerConsistency",
        subjects.LEDGER_RPC_CONSISTENCY,
        "Core NATS request/reply: a consistency proof between two signed checkpoints.",
        (ConsistencyRequest, ConsistencyProof, RpcErrorReply),
        ("gateway", "external systems"),
        ("audit",),
        cloudevent=False,
    ),
    Channel(
        "taskCancelled",
        subjects.TASK_CANCELLED,
        "A client cancelled a task through the gateway's task API (`DELETE /v1/tasks/{id}`), or the "
        "client of a completion went away before its answer (`reason: disconnected`): its result is not "
        "delivered and its budget reservation is released. Every executor replica hears it from the "
        "stream, also one that was disconnected or restarting (a cancellation older than 10 minutes is "
        "not applied): one running the task stops it (the provider call is cut and its tokens so far "
        "billed, estimated) and ends it with `task_cancelled`; one that has not started it skips it. "
        "Other systems may publish it for their own tasks (same tenant): a cancellation counts only for "
        "the task of its `tenant_id`.",
        (TaskCancelled,),
        ("gateway", "external systems"),
        ("audit", "executor", "gateway"),
    ),
    Channel(
        "taskCancelledScoped",
        f"{subjects.TASK_CANCELLED}.{{tenant_token}}",
        "A cancellation by a system scoped to some tenants (`tenant_token` as on "
        "`task.submitted.{tenant_token}`): applied as on `switchyard.task.cancelled` when its `tenant_id` "
        "has the subject's token; otherwise ignored, and dead-lettered by the audit (`tenant_mismatch`).",
        (TaskCancelled,),
        ("external systems",),
        ("audit", "executor", "gateway"),
    ),
    Channel(
        "taskFeedback",
        subjects.TASK_FEEDBACK,
        "A user rated a task's answer (`POST /v1/feedback`): good or bad, optionally the task type it "
        "really was and a reason from a fixed list; never text. The ledger keeps it when the task has a "
        "result of its `tenant_id` on the stream (else it is dead-lettered, `task_not_found`: rate a task "
        "once it has finished), and `switchyard classifier retrain --from-ledger` learns from it.",
        (TaskFeedback,),
        ("gateway", "external systems"),
        ("audit",),
    ),
    Channel(
        "taskFeedbackScoped",
        f"{subjects.TASK_FEEDBACK}.{{tenant_token}}",
        "A rating by a system scoped to some tenants (`tenant_token` as on `task.submitted.{tenant_token}`): "
        "kept by the ledger when its `tenant_id` has the subject's token, else dead-lettered "
        "(`tenant_mismatch`).",
        (TaskFeedback,),
        ("external systems",),
        ("audit",),
    ),
    Channel(
        "guardrailTriggered",
        subjects.SECURITY_GUARDRAIL,
        "A gateway guardrail refused a request (prompt injection, PII, prompt size) or redacted PII from a "
        "prompt or an answer: which guardrail and rule, the action, counts. Never the matched text.",
        (GuardrailTriggered,),
        ("gateway",),
        ("audit",),
    ),
    Channel(
        "authFailure",
        subjects.SECURITY_AUTH_FAILURE,
        "A request failed authentication (missing, unknown, expired or revoked API key; invalid OIDC token) "
        "or was throttled after repeated failures from its client address or key prefix. Never carries the "
        "credential.",
        (AuthFailureRecorded,),
        ("gateway",),
        ("audit",),
    ),
)
