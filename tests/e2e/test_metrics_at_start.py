"""Each service's /metrics, as `make run` starts it, already has at 0 the counters' label combinations it
knows at start: a series born at its first event reads 1 -> 1, and `rate()`/`increase()` miss that event
(a first dead letter, a first out-of-credit call). Label values only requests bring (tenants, routes,
statuses) are not made in advance."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

LOCAL_MODEL = "local/smollm2-135m-instruct"
CONSUMERS = {
    "classifier": ("classifier",),
    "router": ("router", "router-stats"),
    "executor": ("executor",),
    "billing": ("billing", "billing-calls", "billing-webhooks", "billing-erasure"),
    "audit": ("audit",),
}
EXPECTED: dict[str, list[tuple[str, dict[str, str]]]] = {
    "gateway": [
        *(("switchyard_gateway_tasks_total", {"outcome": o}) for o in ("completed", "failed", "timed_out")),
        ("switchyard_gateway_tasks_total", {"outcome": "cancelled"}),
        ("switchyard_gateway_orphaned_tasks_total", {"outcome": "answered", "cause": "lost"}),
        ("switchyard_gateway_orphaned_tasks_total", {"outcome": "timed_out", "cause": "handed_over"}),
        ("switchyard_gateway_cache_total", {"kind": "semantic", "outcome": "hit"}),
        ("switchyard_gateway_cache_total", {"kind": "exact", "outcome": "corrupt"}),
        ("switchyard_gateway_stored_responses_total", {"outcome": "over_share"}),
        ("switchyard_gateway_conversation_turns_total", {"outcome": "gone"}),
        ("switchyard_gateway_batches_finished_total", {"status": "expired"}),
        ("switchyard_gateway_batch_lines_total", {"outcome": "cancelled"}),
        ("switchyard_gateway_batches_created_total", {"endpoint": "/v1/messages"}),
        ("switchyard_gateway_files_added_total", {"purpose": "batch_output"}),
        ("switchyard_gateway_files_removed_bytes_total", {"reason": "expired"}),
        ("switchyard_events_published_total", {"type": "switchyard.gateway.auth_failure.v1"}),
    ],
    "classifier": [
        ("switchyard_classifier_predictions_total", {"source": "reused"}),
        ("switchyard_classifier_heads_refused_total", {"reason": "incompatible"}),
        ("switchyard_events_published_total", {"type": "switchyard.task.classified.v1"}),
        ("switchyard_dead_letters_total", {"consumer": "classifier", "code": "unknown_tenant"}),
    ],
    "router": [
        ("switchyard_router_decisions_total", {"strategy": "cascade", "tier": "local"}),
        ("switchyard_router_estimated_cost_usd_total", {"strategy": "parallel"}),
        ("switchyard_router_unroutable_total", {"code": "model_not_allowed"}),
        ("switchyard_router_policy_reloads_total", {"outcome": "invalid"}),
    ],
    "executor": [
        ("switchyard_executor_tasks_total", {"outcome": "expired"}),
        (
            "switchyard_executor_provider_calls_total",
            {"provider": "local", "model": LOCAL_MODEL, "outcome": "ok"},
        ),
        (
            "switchyard_executor_provider_calls_total",
            {"provider": "local", "model": LOCAL_MODEL, "outcome": "quota_exhausted"},
        ),
        ("switchyard_executor_accepted_answers_total", {"strategy": "parallel"}),
        ("switchyard_executor_spent_tokens_total", {"strategy": "cascade", "delivered": "False"}),
        ("switchyard_executor_cascade_escalations_total", {"check": "json"}),
        ("switchyard_dead_letters_total", {"consumer": "executor", "code": "unknown_tenant"}),
        # the stranded events' sweep files them for every consumer (executor/stranded.py)
        ("switchyard_dead_letters_total", {"consumer": "billing-webhooks", "code": "never_settled"}),
    ],
    "billing": [
        ("switchyard_billing_cost_usd_total", {"tier": "local", "provider": "local", "model": LOCAL_MODEL}),
        (
            "switchyard_billing_tokens_total",
            {"tier": "local", "provider": "local", "model": LOCAL_MODEL, "kind": "completion"},
        ),
        ("switchyard_events_published_total", {"type": "switchyard.billing.budget_alert.v1"}),
        # its consumers ride out database outages and give up an event that never settles (outage_ride.py)
        ("switchyard_dead_letters_total", {"consumer": "billing-calls", "code": "never_settled"}),
    ],
    "audit": [("switchyard_dead_letters_total", {"consumer": "audit", "code": "never_settled"})],
}


def _samples(address: str) -> list[tuple[str, dict[str, str], float]]:
    body = httpx.get(f"http://{address}/metrics", timeout=10).text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(body) for s in f.samples]


def test_each_service_shows_its_known_label_combinations_at_0_from_the_start(stack: RunningStack) -> None:
    missing = []
    for service, address in stack.metrics_targets.items():
        samples = _samples(address)
        wanted = list(EXPECTED[service])
        for consumer in CONSUMERS.get(service, ()):
            wanted += [
                ("switchyard_dead_letters_total", {"consumer": consumer, "code": code})
                for code in ("invalid_event", "handler_error", "transient_error")
            ]
        for name, labels in wanted:
            if not any(n == name and labels.items() <= got.items() for n, got, _ in samples):
                missing.append(f"{service}: {name}{labels}")
    assert not missing, "\n".join(missing)


def test_a_known_combination_that_never_happened_is_exactly_0(stack: RunningStack) -> None:
    samples = _samples(stack.metrics_targets["billing"])
    (webhooks,) = [
        value
        for name, labels, value in samples
        if name == "switchyard_dead_letters_total"
        and labels == {"consumer": "billing-webhooks", "code": "handler_error"}
    ]
    assert webhooks == 0
