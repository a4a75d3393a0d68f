"""`switchyard_executor_cascade_escalations_total{check}`: one series per quality check, whatever the
answer or the client's JSON schema said (a label value taken from a request's text would add a series per
request, for the life of the process)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from switchyard.executor import metrics, quality

pytestmark = pytest.mark.unit


def _checks() -> set[str]:
    return {
        sample.labels["check"]
        for family in REGISTRY.collect()
        if family.name == "switchyard_executor_cascade_escalations"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_an_escalation_is_counted_under_its_check_name_only() -> None:
    # as strategies.py writes it: "<model>: <check>: <problem>; <check>: <problem>"; the json check's
    # problem quotes the client's schema, which may hold "; " and ":" of its own
    why = "openai/gpt-4o-mini: json: $.colour: not one of ['red; evil-1: x', 'blue']; truncation: cut off"
    metrics.observe_strategy("cascade", [why], [], "openai/gpt-4o")
    assert _checks() <= set(quality.CHECKS)
    assert {"json", "truncation"} <= _checks()
