from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from switchyard.common.events import ProviderCallRecorded
from switchyard.executor.resilience.breaker import BreakerState

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

CALLS = Counter(
    "switchyard_executor_provider_calls_total", "Provider calls by outcome", ["provider", "model", "outcome"]
)
CALL_SECONDS = Histogram(
    "switchyard_executor_provider_call_seconds", "Provider call latency", ["provider"], buckets=_SECONDS
)
TTFT_SECONDS = Histogram(
    "switchyard_executor_provider_ttft_seconds",
    "Time to the first streamed token",
    ["provider"],
    buckets=_SECONDS,
)
TASKS = Counter("switchyard_executor_tasks_total", "Tasks by outcome", ["outcome"])
BREAKER_STATE = Gauge(
    "switchyard_executor_breaker_state", "Circuit breaker: 0 closed, 1 half open, 2 open", ["breaker"]
)

_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def observe_call(record: ProviderCallRecorded) -> None:
    CALLS.labels(record.provider, record.model, record.outcome).inc()
    CALL_SECONDS.labels(record.provider).observe(record.latency_ms / 1000.0)
    if record.ttft_ms is not None:
        TTFT_SECONDS.labels(record.provider).observe(record.ttft_ms / 1000.0)


def breaker_changed(key: str, state: BreakerState) -> None:
    BREAKER_STATE.labels(key).set(_STATE_VALUE[state])
