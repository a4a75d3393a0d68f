"""The self-timed overhead of a completion: the gateway's own time on a request minus the time the executor
spent waiting on provider calls (`TaskCompleted.provider_ms`), sent as `x-switchyard-overhead-ms`.

It covers everything Switchyard did for the request (HTTP parsing, auth, limits, budgets, the bus hops,
classification, routing, the executor's own work) and excludes the provider's latency. The clock starts
when the request enters the gateway's middleware and stops when the response is built, so the client's
network and uvicorn's socket handling are outside it: compare it with an outside measurement, not instead.
Only non-streamed answers carry it (a stream's headers leave before the provider has finished); a stream's
is known at its end (`note_stream`). Both feed `switchyard_gateway_overhead_seconds` (the middleware
observes what the request's state holds under `STATE`), from which the latency SLIs are computed: a slow
model's long answer is its own time, not Switchyard's.

Beside it, `server-timing` (W3C Server Timing) splits the same request into the gateway's stages: `prep`
(auth, body, guardrails, catalog, cache look-up), `admit` (limits and budget reservation), `pipeline` (the
task on the bus: submitted to result received, provider time included), `settle` (limits and budget given
back), for embeddings `vectors` (reading the vectors, from the result or the object store, and rendering
them) and `total`, in milliseconds. `bench/trace.py` reads it to break the overhead down.
"""

from __future__ import annotations

import time

from starlette.datastructures import State

from switchyard.common.events import TaskCompleted

HEADER = "x-switchyard-overhead-ms"
HEADER_BYTES = HEADER.encode()
STATE = "overhead_ms"  # the request state's key for its own time, once known


def overhead_ms(started: float, done: TaskCompleted, *, now: float | None = None) -> float | None:
    """None when the answer does not say how long the provider took (an executor from before the field)."""
    waited = done.provider_ms if done.provider_ms is not None else (0.0 if done.cache is not None else None)
    if waited is None:
        return None
    elapsed = ((time.perf_counter() if now is None else now) - started) * 1000.0
    return round(max(elapsed - waited, 0.0), 3)


def note_stream(state: State, started: float, done: TaskCompleted) -> None:
    """A streamed answer's own time, at its end (after its last byte was handed on), for the middleware to
    observe as a whole answer's header is."""
    value = overhead_ms(started, done)
    if value is not None:
        setattr(state, STATE, value)


def headers(started: float, done: TaskCompleted, stages: Stages | None = None) -> dict[str, str]:
    value = overhead_ms(started, done)
    out = {} if value is None else {HEADER: f"{value:.3f}"}
    if stages is not None:
        out["server-timing"] = stages.header()
    return out


class Stages:
    """Consecutive stages of a request: `mark(name)` ends the stage that began at the previous mark."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._last = started
        self._spans: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self._spans.append((name, now - self._last))
        self._last = now

    def header(self) -> str:
        parts = [f"{name};dur={seconds * 1000.0:.3f}" for name, seconds in self._spans]
        parts.append(f"total;dur={(time.perf_counter() - self._started) * 1000.0:.3f}")
        return ", ".join(parts)
