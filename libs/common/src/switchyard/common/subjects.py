"""The one table of subjects, streams, durable consumers and KV buckets.

Services import names from here; no subject string is written anywhere else. The AsyncAPI document is
generated from `CHANNELS` below, so adding a subject here documents it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

PREFIX = "switchyard"

# Streams. EVENTS holds every domain event (limits retention, so several durable consumers read it
# independently); DLQ holds poison messages with the reason they were rejected.
STREAM_EVENTS = "SWITCHYARD"
STREAM_EVENTS_SUBJECTS = (
    f"{PREFIX}.task.>",
    f"{PREFIX}.result.>",
    f"{PREFIX}.provider.>",
    f"{PREFIX}.billing.>",
    f"{PREFIX}.admin.>",
    f"{PREFIX}.security.>",
)
STREAM_DLQ = "SWITCHYARD_DLQ"
STREAM_DLQ_SUBJECTS = (f"{PREFIX}.dlq.>",)
# The server's word that an event reached a consumer's last delivery and was never settled (its handler
# crashed, hung past the ack wait or was stopped, every time): kept, so the executors' `stranded` consumer
# dead-letters the event and answers its task even when no process was listening at that moment.
STREAM_STRANDED = "SWITCHYARD_STRANDED"
STRANDED_ADVISORIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM_EVENTS}.*"
STREAM_STRANDED_SUBJECTS = (STRANDED_ADVISORIES,)

# Task pipeline. External systems publish TASK_SUBMITTED exactly as the gateway does.
TASK_SUBMITTED = f"{PREFIX}.task.submitted"
TASK_CLASSIFIED = f"{PREFIX}.task.classified"
TASK_ROUTED = f"{PREFIX}.task.routed"
TASK_TIMED_OUT = f"{PREFIX}.task.timed_out"
PROVIDER_CALL = f"{PREFIX}.provider.call"
USAGE_RECORDED = f"{PREFIX}.billing.usage"
# A budget passed 50, 80 or 100 % (once per threshold, account, period and budget); billing sends webhooks.
BUDGET_ALERT = f"{PREFIX}.billing.alert"
# A client cancelled a task through the gateway's task API (its result will not be delivered).
TASK_CANCELLED = f"{PREFIX}.task.cancelled"
# A user rated a task's answer (rating, optionally the real task type; never text): the classifier's
# learning signal, kept by the ledger.
TASK_FEEDBACK = f"{PREFIX}.task.feedback"
# The gateway's admin API records every change (organisations, users, keys, throttle) here; no secrets.
ADMIN_ACTION = f"{PREFIX}.admin.action"
# Security events of the gateway (no secrets, no matched text): guardrail refusals and redactions, and
# authentication failures (also the throttling of repeated ones).
SECURITY_GUARDRAIL = f"{PREFIX}.security.guardrail"
SECURITY_AUTH_FAILURE = f"{PREFIX}.security.auth_failure"

# A system given a NATS user for some tenants publishes their tasks, cancellations and feedback on these
# subjects with the tenant's token appended (`scoped`), and hears only those tenants' results and chunks
# (their subjects carry the token too): NATS permissions see subjects, never payloads.
SCOPED = (TASK_SUBMITTED, TASK_CANCELLED, TASK_FEEDBACK)
# The token's length in hex digits: 64 bits, so no tenant can find an id of its own with another's token.
TENANT_TOKEN_HEX = 16

RESULT_PREFIX = f"{PREFIX}.result"
RESULT_ALL = f"{RESULT_PREFIX}.>"
# Streamed chunks travel on core NATS (not stored): the stored result event carries the whole answer.
CHUNK_PREFIX = f"{PREFIX}.chunk"
PING_PREFIX = f"{PREFIX}.ping"
DLQ_PREFIX = f"{PREFIX}.dlq"

# Ledger proofs: core NATS request/reply answered by the audit service (a queue group, so replicas share).
LEDGER_RPC_PREFIX = f"{PREFIX}.ledger.rpc"
LEDGER_RPC_CHECKPOINT = f"{LEDGER_RPC_PREFIX}.checkpoint"
LEDGER_RPC_INCLUSION = f"{LEDGER_RPC_PREFIX}.inclusion"
LEDGER_RPC_CONSISTENCY = f"{LEDGER_RPC_PREFIX}.consistency"
LEDGER_RPC_DIGEST = f"{LEDGER_RPC_PREFIX}.digest"
LEDGER_RPC_QUEUE = "audit-ledger-rpc"

# Billing queries (usage, statements, analytics, webhook endpoints): core NATS request/reply answered by
# billing (see billing_rpc.py). Not under `switchyard.billing.>`, which the events stream stores.
BILLING_RPC_PREFIX = f"{PREFIX}.usage.rpc"
BILLING_RPC_USAGE = f"{BILLING_RPC_PREFIX}.usage"
BILLING_RPC_STATEMENT = f"{BILLING_RPC_PREFIX}.statement"
BILLING_RPC_SAVINGS = f"{BILLING_RPC_PREFIX}.savings"
BILLING_RPC_FORECAST = f"{BILLING_RPC_PREFIX}.forecast"
BILLING_RPC_WEBHOOK_CREATE = f"{BILLING_RPC_PREFIX}.webhooks.create"
BILLING_RPC_WEBHOOK_LIST = f"{BILLING_RPC_PREFIX}.webhooks.list"
BILLING_RPC_WEBHOOK_DELETE = f"{BILLING_RPC_PREFIX}.webhooks.delete"
BILLING_RPC_QUEUE = "billing-rpc"

# KV buckets.
# Budget ceilings the gateway enforces (`user.<tenant>.<user>` daily, `org.<tenant>` monthly, in USD),
# written by the gateway when it reserves, read by billing to raise budget alerts.
KV_BUDGET_LIMITS = "switchyard-budget-limits"
KV_PROVIDERS = "switchyard-providers"
# A tenant's budget headroom in USD (key: tenant id); billing/gateway write it, the router reads it.
KV_BUDGETS = "switchyard-budgets"
# EMA success and latency per model (key: encoded model id), written by the router replicas with CAS.
KV_ROUTING_STATS = "switchyard-routing-stats"
# Circuit breakers and rpm/tpm buckets shared by executor replicas (compare-and-set); the router reads them.
KV_BREAKERS = "switchyard-breakers"
KV_RATE_LIMITS = "switchyard-rate-limits"
# What a provider returned beside a tool call and needs back with it (Gemini's thought signatures, OpenAI's
# encrypted reasoning), by a hash of tenant and tool call id, for a day: the executors' (tool_state.py).
KV_TOOL_STATE = "switchyard-tool-state"
# What a run of a task cut by its executor's stop was billed for (key: task id), for the run that redoes it
# to report in its result's `charged` (carried.py).
KV_CARRIED = "switchyard-carried-calls"
# How many deliveries of an event failed because its consumer's database could not be reached (key:
# `<stream>.<durable>.<stream sequence>`), for the consumers that ride out database outages: the rest of its
# deliveries count against `max_deliver`, across processes and replicas (outage_ride.py); 2 days.
KV_OUTAGE_RETRIES = "switchyard-outage-retries"
# The gateway's shared state (all compare-and-set across gateway replicas):
# request/token/concurrency counters per user, organisation and globally (keys carry their window);
KV_GATEWAY_LIMITS = "switchyard-gateway-limits"
# spend counters in micro-USD: reserved worst case + settled actual cost, per user-day and org-month
# (and a key's day or month), kept 40 days after their last write;
KV_SPEND = "switchyard-spend"
# a key's lifetime spend in micro-USD (a budget without a duration), the same way, kept until deleted;
KV_SPEND_TOTAL = "switchyard-spend-total"
# auth changes every gateway replica watches to drop cached keys at once (key.<id>, user.<id>, org.<id>);
KV_AUTH_CHANGES = "switchyard-auth-changes"
# operator switches such as the global emergency throttle (key `throttle`);
KV_GATEWAY_CONTROL = "switchyard-gateway-control"
# the status of tasks submitted through the gateway's task API (key: task id).
KV_TASKS = "switchyard-tasks"
# each gateway replica's admitted, unsettled tasks (key: replica name), so another settles them if it dies.
KV_GATEWAYS = "switchyard-gateways"
# OpenAI batches run by the gateway (`b.<batch id>`: the batch and its runner's lease; `t.<tenant>.<batch
# id>`: a tenant's batches, to list them; `a.<batch id>`: the batches not finished yet, for the runners;
# `e.<batch id>.<line>`: a line refused before it became a task).
KV_BATCHES = "switchyard-batches"
# the response cache: answers by tenant and request hash (`a.<tenant>.<hash>`) and their hit counts
# (`h.<tenant>.<hash>`), embeddings under `e.` and `eh.`; every entry expires (the bucket's max age bounds
# the longest TTL).
KV_CACHE = "switchyard-cache"
# the Files API's file descriptions (OpenAI's file object) by tenant hash and file id (files/store.py).
KV_FILES = "switchyard-files-index"
# stored Responses API responses (input items and the response) by tenant hash and response id
# (gateway/stored_responses/store.py), kept SWITCHYARD_RESPONSES_KEEP_S.
KV_RESPONSES = "switchyard-responses"
# the classifier heads in force (key `live`: version, sha256s, the heads before them), written by `switchyard
# classifier promote|rollback` and `retrain --from-ledger`; every classifier replica watches it.
KV_CLASSIFIER_HEADS = "switchyard-classifier-heads"
# each classifier replica's heads (key: replica name): what it classifies with, what it refused; entries
# expire unless renewed (`switchyard classifier heads` lists them).
KV_CLASSIFIER_REPLICAS = "switchyard-classifier-replicas"
# The tenant registry: the organisations (`t.<tenant>`: active or erased) and `kept`, once somebody keeps it;
# the gateway writes it (from its database: at start, every few minutes, on each organisation's creation
# and erasure), or `switchyard tenants` on a bus-only deployment; the classifier and the executors refuse
# tasks of tenants it does not list (tenants.py).
KV_TENANTS = "switchyard-tenants"

# Object store buckets.
# An embedding task's vectors too large to travel in its result event (`vectors.py`): the executor puts them
# under a name of tenant and task id, the result names the object, the gateway deletes it once read; every
# object expires (the bucket's TTL). Outside the SWITCHYARD stream: audit and billing never receive them.
OBJ_EMBEDDINGS = "switchyard-embeddings"
# The Files API's files (batch input and output), by tenant hash and file id; kept until deleted or their
# `expires_at` (gateway files/store.py). Outside the SWITCHYARD stream.
OBJ_FILES = "switchyard-files"
# An embedding batch line's vectors too large for its result event, until the batch's output file holds
# them: put here by the executor (TaskSubmitted.batch; the result's `bucket` says so), or copied here out of
# OBJ_EMBEDDINGS (whose objects expire in minutes) by the batch's runner (gateway batches/vectors.py).
OBJ_BATCH_VECTORS = "switchyard-batch-vectors"
# Promoted classifier heads' files (`<weights sha256>.npz`, `<manifest sha256>.json`), the live ones and the
# few before them (KV_CLASSIFIER_HEADS names them); content-addressed, so a name always holds the same bytes.
OBJ_CLASSIFIER_HEADS = "switchyard-classifier-heads"
# The `bucket` an embedding result may name (absent: OBJ_EMBEDDINGS).
VectorsBucket = Literal["switchyard-batch-vectors"]

SERVICES = ("gateway", "classifier", "router", "executor", "billing", "audit")


@functools.lru_cache(maxsize=4096)  # the same few tenants on every event: 0.9 us a SHA-256, ~0.05 us cached
def tenant_token(tenant_id: str) -> str:
    """The subject token of a tenant (its ids are any 1-64 characters, a subject token may hold no `.`,
    `*`, `>` or space): a SHA-256 prefix, the same in every process and release."""
    return hashlib.sha256(tenant_id.encode()).hexdigest()[:TENANT_TOKEN_HEX]


def scoped(subject: str, tenant_id: str) -> str:
    """`subject` (one of SCOPED) for one tenant: what a tenant-scoped NATS user may publish."""
    return f"{subject}.{tenant_token(tenant_id)}"


def results_consumer(user: str, tenant_id: str | None) -> Consumer:
    """The durable consumer another system's NATS user `user` may keep on one tenant's stored results (on
    every tenant's for an all-tenant user: `tenant_id` None), so results published while it was away
    wait for it: named `<user>-<token>` (`<user>-all`), on `switchyard.result.<token>.*`."""
    if tenant_id is None:
        return Consumer(f"{user}-all", STREAM_EVENTS, RESULT_ALL)
    token = tenant_token(tenant_id)
    return Consumer(f"{user}-{token}", STREAM_EVENTS, f"{RESULT_PREFIX}.{token}.*")


def scoped_token(subject: str) -> str | None:
    """The tenant token of a SCOPED subject (`switchyard.task.submitted.<token>`), None for another."""
    for base in SCOPED:
        token = subject.removeprefix(f"{base}.")
        if token != subject and token and "." not in token:
            return token
    return None


def result_subject(tenant_id: str, task_id: str) -> str:
    return result_subject_of_token(tenant_token(tenant_id), task_id)


def result_subject_of_token(token: str, task_id: str) -> str:
    return f"{RESULT_PREFIX}.{token}.{task_id}"


def legacy_result_subject(task_id: str) -> str:
    """Where a release before tenant tokens stored a task's result (still looked up: upgrades.md)."""
    return f"{RESULT_PREFIX}.{task_id}"


def chunk_subject(tenant_id: str, task_id: str) -> str:
    return f"{CHUNK_PREFIX}.{tenant_token(tenant_id)}.{task_id}"


def ping_subject(service: str) -> str:
    return f"{PING_PREFIX}.{service}"


def dlq_subject(service: str) -> str:
    return f"{DLQ_PREFIX}.{service}"


@dataclass(frozen=True, slots=True)
class Consumer:
    """A durable pull consumer: its name, stream and the subject it filters on."""

    durable: str
    stream: str
    filter_subject: str
    max_deliver: int = 5


CLASSIFIER_CONSUMER = Consumer("classifier", STREAM_EVENTS, TASK_SUBMITTED)
# ... and those of tenant-scoped systems (`switchyard.task.submitted.<token>`): a durable of its own, since
# each durable is granted on its one filter (bus_permissions.py).
CLASSIFIER_SCOPED_CONSUMER = Consumer("classifier-scoped", STREAM_EVENTS, f"{TASK_SUBMITTED}.*")
# Opt-in: features (never text) of classified tasks of consenting tenants, for retraining the heads.
CLASSIFIER_OUTCOMES_CONSUMER = Consumer("classifier-outcomes", STREAM_EVENTS, TASK_CLASSIFIED)
# ... and forgets an organisation's when it is erased (`organization.erased` admin actions).
CLASSIFIER_OUTCOMES_ERASURE_CONSUMER = Consumer("classifier-outcomes-erasure", STREAM_EVENTS, ADMIN_ACTION)
ROUTER_CONSUMER = Consumer("router", STREAM_EVENTS, TASK_CLASSIFIED)
EXECUTOR_CONSUMER = Consumer("executor", STREAM_EVENTS, TASK_ROUTED, max_deliver=3)
# The router replicas learn provider health from every provider call (one replica handles each event).
ROUTER_STATS_CONSUMER = Consumer("router-stats", STREAM_EVENTS, PROVIDER_CALL, max_deliver=10)
# Billing and audit write to the database: they ride out a database outage of ~20 minutes (backoff
# doubling to 30 s) before a message is dead-lettered.
BILLING_CONSUMER = Consumer("billing", STREAM_EVENTS, RESULT_ALL, max_deliver=50)
# Calls whose tokens were spent but whose answer was not delivered (parallel losers, escalated cascade
# steps) are charged from their provider-call records.
BILLING_CALLS_CONSUMER = Consumer("billing-calls", STREAM_EVENTS, PROVIDER_CALL, max_deliver=50)
AUDIT_CONSUMER = Consumer("audit", STREAM_EVENTS, f"{PREFIX}.>", max_deliver=50)
# Budget alerts to the organisations' webhook endpoints: retried with backoff (0.5 s doubling to 30 s,
# ~5 minutes in all) while an endpoint fails, then dead-lettered.
BILLING_WEBHOOKS_CONSUMER = Consumer("billing-webhooks", STREAM_EVENTS, BUDGET_ALERT, max_deliver=16)
# ... and deletes an erased organisation's webhook endpoints and deliveries (`organization.erased`).
BILLING_ERASURE_CONSUMER = Consumer("billing-erasure", STREAM_EVENTS, ADMIN_ACTION, max_deliver=50)

# Every durable consumer of Switchyard's services on the events stream: what an erasure waits for before
# it deletes an organisation's events (gateway access/bus_purge.py), not another system's consumer (an
# integrator's on its results, `results_consumer`).
EVENT_DURABLES = frozenset(
    c.durable
    for c in (
        CLASSIFIER_CONSUMER,
        CLASSIFIER_SCOPED_CONSUMER,
        CLASSIFIER_OUTCOMES_CONSUMER,
        CLASSIFIER_OUTCOMES_ERASURE_CONSUMER,
        ROUTER_CONSUMER,
        ROUTER_STATS_CONSUMER,
        EXECUTOR_CONSUMER,
        BILLING_CONSUMER,
        BILLING_CALLS_CONSUMER,
        BILLING_WEBHOOKS_CONSUMER,
        BILLING_ERASURE_CONSUMER,
        AUDIT_CONSUMER,
    )
)

# Events stranded at a consumer's last delivery (STREAM_STRANDED), dead-lettered by the executors.
STRANDED_CONSUMER = Consumer("stranded", STREAM_STRANDED, STRANDED_ADVISORIES, max_deliver=20)

# The consumers whose lag their services sample (lag.py): the task path's, billing's and the ledger's.
CONSUMERS = (
    CLASSIFIER_CONSUMER,
    CLASSIFIER_SCOPED_CONSUMER,
    ROUTER_CONSUMER,
    EXECUTOR_CONSUMER,
    BILLING_CONSUMER,
    AUDIT_CONSUMER,
)


def lag_consumer_name(consumer: Consumer) -> str:
    """The short-lived consumer that reads the time of `consumer`'s oldest pending event (`lag.py`): one
    fixed name per durable, so a service's user may make it, and no other, on its own filter alone."""
    return f"lag-{consumer.durable}"
