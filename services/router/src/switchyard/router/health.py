"""What the router knows of each model's health: EMAs of success and latency learned from provider-call
events (shared by router replicas through JetStream KV), and the breakers and rate-limit buckets the
executors share. Pure functions here; `HealthBoard` (app side) reads and writes KV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, Field

# Outcomes that say something about a provider's health (the executor's breaker counts the same ones).
# Not `cut_short`: a call its task's deadline cut before the time a call gets on its own (a client that
# waits 5 s for a model that takes 8) is that client's choice, and these statistics route every tenant.
FAILURES = frozenset(
    {"rate_limited", "overloaded", "timeout", "network", "bad_response", "auth", "quota_exhausted"}
)
RECENT_IDS = 64  # event ids remembered per model, so a redelivered event is not counted twice


class ModelStats(BaseModel):
    success: float = 1.0  # EMA of ok (1) / failed (0)
    latency_ms: float | None = None  # EMA over successful calls
    samples: int = 0
    updated_at: float = 0.0  # wall clock
    recent: list[str] = Field(default_factory=list)


def counts(outcome: str) -> bool:
    """Whether a call with this outcome teaches us anything about the provider."""
    return outcome == "ok" or outcome in FAILURES


def observe(
    stats: ModelStats | None,
    *,
    event_id: str,
    outcome: str,
    latency_ms: float,
    alpha: float,
    now: float,
    recovery_s: float | None = None,
) -> ModelStats | None:
    """The statistics after one call, or None when nothing changes (a duplicate, an outcome that says
    nothing about health). With `recovery_s` (the policy's), the EMA goes on from the success as faded
    since the last call (`effective_success`): the value routing used, so a model that got traffic again
    because its penalty faded and then answers is not put back behind the others by a stale EMA."""
    current = stats or ModelStats()
    if not counts(outcome) or event_id in current.recent:
        return None
    ok = 1.0 if outcome == "ok" else 0.0
    prior = current.success
    if recovery_s is not None and current.samples:
        prior = effective_success(current, now=now, recovery_s=recovery_s)
    success = ok if current.samples == 0 else prior + alpha * (ok - prior)
    latency = current.latency_ms
    if outcome == "ok":
        latency = latency_ms if latency is None else latency + alpha * (latency_ms - latency)
    return ModelStats(
        success=round(success, 6),
        latency_ms=None if latency is None else round(latency, 3),
        samples=current.samples + 1,
        updated_at=now,
        recent=[*current.recent, event_id][-RECENT_IDS:],
    )


def effective_success(stats: ModelStats, *, now: float, recovery_s: float) -> float:
    """A penalty fades towards full health while no new evidence arrives, so a provider that failed gets
    traffic (and a chance to prove itself) again."""
    age = max(now - stats.updated_at, 0.0)
    return 1.0 - (1.0 - stats.success) * math.exp(-age / recovery_s)


@dataclass(frozen=True, slots=True)
class ModelSignal:
    """The live signals for one model at decision time (what a replay needs)."""

    success: float | None = None
    latency_ms: float | None = None
    samples: int = 0
    breaker: str = "closed"
    rate_headroom: float | None = None

    def as_reason(self) -> dict[str, object]:
        return {
            "success": None if self.success is None else round(self.success, 4),
            "latency_ms": self.latency_ms,
            "samples": self.samples,
            "breaker": self.breaker,
            "rate_headroom": None if self.rate_headroom is None else round(self.rate_headroom, 4),
        }
