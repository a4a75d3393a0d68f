"""The self-timed overhead of a completion: the gateway's own time on a request minus the time the executor
spent waiting on provider calls (`TaskCompleted.provider_ms`), sent as `x-switchyard-overhead-ms`.

It covers everything Switchyard did for the request (HTTP parsing, auth, limits, budgets, the bus hops,
classification, routing, the executor's own work) and excludes the provider's latency. The clock starts
when the request enters the gateway's middleware and stops when the response is built, so the client's
network and uvicorn's socket handling are outside it: compare it with an outside measurement, not instead.
Only non-streamed answers carry it (a stream's headers leave before the provider has finished).
"""

from __future__ import annotations

import time

from switchyard.common.events import TaskCompleted

HEADER = "x-switchyard-overhead-ms"


def overhead_ms(started: float, done: TaskCompleted, *, now: float | None = None) -> float | None:
    """None when the answer does not say how long the provider took (an executor from before the field)."""
    waited = done.provider_ms if done.provider_ms is not None else (0.0 if done.cache is not None else None)
    if waited is None:
        return None
    elapsed = ((time.perf_counter() if now is None else now) - started) * 1000.0
    return round(max(elapsed - waited, 0.0), 3)


def headers(started: float, done: TaskCompleted) -> dict[str, str]:
    value = overhead_ms(started, done)
    return {} if value is None else {HEADER: f"{value:.3f}"}
