"""Which announced providers count as available: an executor's announcement goes stale when nobody renews
it; one written by hand does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchyard.common.providers import STALE_S, ProviderStatus, available

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 16, 0, tzinfo=UTC)


def _status(name: str, *, age_s: float, by: str = "executor-1", up: bool = True) -> ProviderStatus:
    return ProviderStatus(
        provider=name, announced_by=by, available=up, updated_at=NOW - timedelta(seconds=age_s)
    )


def test_an_announcement_nobody_renewed_within_stale_s_is_not_available() -> None:
    statuses = {
        "openai": _status("openai", age_s=5),
        "anthropic": _status("anthropic", age_s=STALE_S + 1),  # its last executor is gone
        "gemini": _status("gemini", age_s=STALE_S - 1),
        "local": _status("local", age_s=10 * STALE_S, by=""),  # written by hand: never stale
        "mistral": _status("mistral", age_s=1, up=False),
    }
    assert available(statuses, now=NOW) == {"openai", "gemini", "local"}


def test_a_naive_time_reads_as_utc() -> None:
    naive = ProviderStatus(
        provider="openai", announced_by="e", updated_at=(NOW - timedelta(seconds=5)).replace(tzinfo=None)
    )
    assert available({"openai": naive}, now=NOW) == {"openai"}
