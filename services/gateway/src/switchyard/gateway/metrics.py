from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from switchyard.common.metrics import zero

REQUESTS = Counter("switchyard_gateway_requests_total", "HTTP requests", ["route", "status"])
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
LATENCY = Histogram(
    "switchyard_gateway_request_seconds",
    "HTTP request latency (to the end of the response body)",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
# The latency SLIs' source (deploy/prometheus/rules/slo.yml): what a model's own time does not decide.
OVERHEAD = Histogram(
    "switchyard_gateway_overhead_seconds",
    "Switchyard's own time on an answered model request: its latency (to the end of the response body) "
    "less the executor's wait on provider calls (x-switchyard-overhead-ms; streams too, at their end)",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
TASKS = Counter(
    "switchyard_gateway_tasks_total",
    "Tasks submitted, by how their wait ended: completed, failed (their outcome came), timed_out (the wait "
    "ran out), cancelled (their client went away, or the gateway's stop ended them)",
    ["outcome"],
)
CACHE = Counter(
    "switchyard_gateway_cache_total",
    "Response cache lookups and stores "
    "(kind: exact, semantic, any; outcome: hit, miss, bypass, stored, corrupt)",
    ["kind", "outcome"],
)
GUARDRAILS = Counter(
    "switchyard_gateway_guardrail_total",
    "Guardrail refusals and redactions (stage: input, output; action: refused, redacted)",
    ["guardrail", "stage", "action"],
)
UNKNOWN_TENANTS = Gauge(
    "switchyard_gateway_unknown_tenants",
    "Tenant ids the guardrail file or the cache's per-tenant settings name that no organisation has, as "
    "checked at start (source: guardrails, cache): their settings apply to nobody",
    ["source"],
)
AUTH_FAILURES = Counter(
    "switchyard_gateway_auth_failures_total",
    "Failed authentications by reason code, and requests throttled for repeated failures",
    ["reason", "credential"],
)
ORPHANS = Counter(
    "switchyard_gateway_orphaned_tasks_total",
    "Tasks another gateway replica left in flight, settled by this one (outcome: answered, failed, "
    "timed_out; cause: lost, the replica died or was taken for dead; handed_over, it stopped with them)",
    ["outcome", "cause"],
)
# Files and batches. No label names an organisation: their number would be unbounded.
FILES_ADDED = Counter(
    "switchyard_gateway_files_added_total",
    "Files stored (purpose: batch, a client's upload; batch_output, a batch's output or error file)",
    ["purpose"],
)
FILES_ADDED_BYTES = Counter(
    "switchyard_gateway_files_added_bytes_total", "Bytes of the files stored", ["purpose"]
)
FILES_REMOVED = Counter(
    "switchyard_gateway_files_removed_total",
    "Files removed (reason: deleted, by a client; expired, past expires_at, by a read, a list or a sweep)",
    ["reason"],
)
FILES_REMOVED_BYTES = Counter(
    "switchyard_gateway_files_removed_bytes_total", "Bytes of the files removed", ["reason"]
)
FILES_STORED = Gauge(
    "switchyard_gateway_files_stored",
    "Files in the store, every organisation's, as this replica's last sweep found them",
    ["purpose"],
)
FILES_STORED_BYTES = Gauge(
    "switchyard_gateway_files_stored_bytes",
    "Bytes of the files in the store, every organisation's, as this replica's last sweep found them",
    ["purpose"],
)
FILE_UPLOADS_REFUSED = Counter(
    "switchyard_gateway_file_uploads_refused_total",
    "Uploads (POST /v1/files) refused after authentication, by error code",
    ["code"],
)
BATCHES_CREATED = Counter("switchyard_gateway_batches_created_total", "Batches created", ["endpoint"])
BATCHES_FINISHED = Counter(
    "switchyard_gateway_batches_finished_total",
    "Batches ended (status: completed, failed, expired, cancelled)",
    ["status"],
)
BATCH_LINES = Counter(
    "switchyard_gateway_batch_lines_total",
    "Batch lines by outcome: completed, failed (a result known), cancelled, expired (never run: their batch "
    "ended so first)",
    ["outcome"],
)
STORED_RESPONSES = Counter(
    "switchyard_gateway_stored_responses_total",
    "Responses API answers by what was kept of them (outcome: stored; too_large, larger than a bus message; "
    "over_share, its organisation holds its share of the bucket; refused, the bucket full or unavailable; "
    "not_asked, `store: false`)",
    ["outcome"],
)
CONVERSATION_TURNS = Counter(
    "switchyard_gateway_conversation_turns_total",
    "Responses API answers in a conversation (`conversation`) by what became of their items (outcome: "
    "appended; gone, the conversation deleted meanwhile; refused, over the organisation's share, larger "
    "than a bus message, or the bucket unavailable)",
    ["outcome"],
)

# Each counter's label values known at start (switchyard.common.metrics: `zero`); what only requests bring
# (routes and statuses, guardrails and auth failures' reasons, refused uploads' codes) is born with them.
_AT_START: tuple[tuple[Counter, tuple[tuple[str, ...], ...]], ...] = (
    (TASKS, (("completed",), ("failed",), ("timed_out",), ("cancelled",))),
    (
        CACHE,
        (
            ("exact", "hit"),
            ("semantic", "hit"),
            ("any", "miss"),
            ("any", "bypass"),
            ("any", "stored"),
            ("exact", "corrupt"),
        ),
    ),
    (ORPHANS, tuple((o, c) for o in ("answered", "failed", "timed_out") for c in ("lost", "handed_over"))),
    (FILES_ADDED, (("batch",), ("batch_output",))),
    (FILES_ADDED_BYTES, (("batch",), ("batch_output",))),
    (FILES_REMOVED, (("deleted",), ("expired",))),
    (FILES_REMOVED_BYTES, (("deleted",), ("expired",))),
    (BATCHES_FINISHED, (("completed",), ("failed",), ("expired",), ("cancelled",))),
    (BATCH_LINES, (("completed",), ("failed",), ("cancelled",), ("expired",))),
    (STORED_RESPONSES, (("stored",), ("too_large",), ("over_share",), ("refused",), ("not_asked",))),
    (CONVERSATION_TURNS, (("appended",), ("gone",), ("refused",))),
)


def at_start(*, batch_endpoints: Iterable[str]) -> None:
    for counter, combinations in _AT_START:
        zero(counter, combinations)
    zero(BATCHES_CREATED, [(endpoint,) for endpoint in batch_endpoints])
