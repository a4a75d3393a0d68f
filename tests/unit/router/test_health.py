from __future__ import annotations

import pytest

from switchyard.router.health import ModelStats, effective_success, observe

pytestmark = pytest.mark.unit


def test_the_ema_learns_failures_and_ignores_duplicates_and_non_health_outcomes() -> None:
    stats = None
    for n in range(5):
        stats = observe(stats, event_id=f"e{n}", outcome="ok", latency_ms=100.0, alpha=0.5, now=0.0) or stats
    assert stats is not None and stats.success == 1.0 and stats.latency_ms == 100.0 and stats.samples == 5
    failed = observe(stats, event_id="f1", outcome="overloaded", latency_ms=5.0, alpha=0.5, now=1.0)
    assert failed is not None and failed.success == 0.5 and failed.latency_ms == 100.0
    assert observe(failed, event_id="f1", outcome="overloaded", latency_ms=5.0, alpha=0.5, now=1.0) is None
    assert observe(failed, event_id="x", outcome="bad_request", latency_ms=5.0, alpha=0.5, now=1.0) is None
    assert observe(failed, event_id="y", outcome="cancelled", latency_ms=5.0, alpha=0.5, now=1.0) is None


def test_a_penalty_fades_so_a_failed_provider_recovers() -> None:
    stats = ModelStats(success=0.0, samples=10, updated_at=100.0)
    assert effective_success(stats, now=100.0, recovery_s=60) == 0.0
    assert 0.6 < effective_success(stats, now=160.0, recovery_s=60) < 0.65
    assert effective_success(stats, now=1000.0, recovery_s=60) > 0.99
