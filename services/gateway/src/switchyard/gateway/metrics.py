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
