"""`x-switchyard-overhead-ms`: the gateway's own time on a request minus the provider's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchyard.common.events import TaskCompleted, Usage
from switchyard.gateway.overhead import HEADER, headers, overhead_ms

pytestmark = pytest.mark.unit


def done(provider_ms: float | None) -> TaskCompleted:
    return TaskCompleted(
        task_id="t1",
        tenant_id="acme",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content="Paris",
        finish_reason="stop",
        usage=Usage(prompt_tokens=5, completion_tokens=1, total_tokens=6),
        attempts=1,
        latency_ms=30.0,
        provider_ms=provider_ms,
        completed_at=datetime.now(UTC),
    )


def test_the_overhead_is_the_gateways_time_less_the_providers() -> None:
    assert overhead_ms(10.0, done(20.0), now=10.0255) == pytest.approx(5.5)
    assert overhead_ms(10.0, done(30.0), now=10.020) == 0.0  # clocks of two processes: never negative


def test_no_header_when_the_executor_does_not_say_how_long_the_provider_took() -> None:
    assert headers(0.0, done(None)) == {}
    value = headers(0.0, done(0.0))[HEADER]
    assert float(value) > 0
