from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("switchyard_gateway_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram(
    "switchyard_gateway_request_seconds",
    "HTTP request latency (to the end of the response body)",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
TASKS = Counter("switchyard_gateway_tasks_total", "Tasks by outcome", ["outcome"])
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
