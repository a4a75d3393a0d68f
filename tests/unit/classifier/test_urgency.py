from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchyard.classifier.urgency import urgency

pytestmark = pytest.mark.unit
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def u(priority: str = "normal", deadline: datetime | None = None, text: str = "hello") -> float:
    return urgency(priority=priority, deadline=deadline, text=text, now=NOW)


def test_priority_sets_the_level() -> None:
    assert u("low") < u("normal") < u("high")


def test_close_deadlines_raise_urgency_whatever_the_priority() -> None:
    assert u("low", NOW + timedelta(seconds=5)) >= 0.95
    assert u("low", NOW - timedelta(seconds=1)) == 1.0
    assert u("normal", NOW + timedelta(seconds=45)) >= 0.85
    assert u("normal", NOW + timedelta(days=2)) == u("normal")
    naive = (NOW + timedelta(seconds=5)).replace(tzinfo=None)
    assert u("low", naive) >= 0.95


def test_content_nudges_but_never_overrides_metadata() -> None:
    assert u(text="URGENT: production is down") > u(text="why is the sky blue")
    assert u(text="no rush, whenever you have time") < u(text="why is the sky blue")
    assert u("low", text="URGENT!!! ASAP!!!") < u("normal", text="why is the sky blue")
    assert u("high", text="urgent") <= 1.0 and u("low", text="no rush") >= 0.0


def test_cues_at_the_end_of_long_prompts_count() -> None:
    assert u(text="x " * 50_000 + "please answer asap") > u(text="x " * 50_000)
