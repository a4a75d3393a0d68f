from __future__ import annotations

import pytest

from switchyard.common.events import ProviderCallRecorded
from switchyard.router.health import ModelStats, effective_success, observe
from switchyard.router.stats import fold

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


def test_an_account_out_of_credit_is_a_failure_of_its_provider_as_a_wrong_key_is() -> None:
    """Its calls all fail until an operator tops it up: routing learns to go elsewhere meanwhile."""
    for outcome in ("auth", "quota_exhausted"):
        failed = observe(None, event_id="e", outcome=outcome, latency_ms=5.0, alpha=0.5, now=0.0)
        assert failed is not None and failed.success == 0.0


def test_a_penalty_fades_so_a_failed_provider_recovers() -> None:
    stats = ModelStats(success=0.0, samples=10, updated_at=100.0)
    assert effective_success(stats, now=100.0, recovery_s=60) == 0.0
    assert 0.6 < effective_success(stats, now=160.0, recovery_s=60) < 0.65
    assert effective_success(stats, now=1000.0, recovery_s=60) > 0.99


def _call(outcome: str) -> ProviderCallRecorded:
    return ProviderCallRecorded(
        task_id="t", tenant_id="acme", attempt=1, provider="p", model="p/m", outcome=outcome, latency_ms=900.0
    )


def test_a_call_its_tasks_deadline_cut_short_is_not_a_failure_of_the_model() -> None:
    """A client that waits 1 s for a model that answers in 3: its cut (`cut_short`) is no evidence about
    the model, whose statistics route every tenant; the same call timing out with its full time is."""
    healthy = ModelStats(success=1.0, latency_ms=800.0, samples=20, updated_at=0.0)
    stored, counted = fold(
        healthy.model_dump_json().encode(), [("e1", _call("cut_short"), 0.5, None)], now=1.0
    )
    assert stored is None and counted == [False]
    stored, counted = fold(healthy.model_dump_json().encode(), [("e2", _call("timeout"), 0.5, None)], now=1.0)
    assert stored is not None and counted == [True]
    assert ModelStats.model_validate_json(stored).success == 0.5


def test_a_recovered_model_that_answers_stays_healthy() -> None:
    """Demoted at a success EMA of 0.2, a model's penalty fades (recovery_s) and it gets traffic again: a
    call that then succeeds is evidence for it. The EMA goes on from the faded value, not from the stale
    0.2 (which made that success store 0.36 and, being fresh, put the model back behind the others)."""
    demoted = ModelStats(success=0.2, latency_ms=500.0, samples=20, updated_at=0.0)
    assert effective_success(demoted, now=3000.0, recovery_s=300) > 0.99
    after = observe(
        demoted, event_id="ok1", outcome="ok", latency_ms=400.0, alpha=0.2, now=3000.0, recovery_s=300
    )
    assert after is not None and after.success > 0.99
    assert effective_success(after, now=3000.0, recovery_s=300) > 0.99
    # fresh evidence is not faded: a model failing now goes on from where it is
    failing = observe(
        demoted, event_id="f", outcome="timeout", latency_ms=1.0, alpha=0.2, now=1.0, recovery_s=300
    )
    assert failing is not None and failing.success < 0.2
