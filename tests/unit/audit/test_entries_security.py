"""The gateway's security events in the ledger: a guardrail decision names the rule and the counts, an
authentication failure the reason and the client; neither carries text or a credential."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchyard.audit.entries import FAILURE, SUCCESS, UNKNOWN_TENANT, draft_for
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import AuthFailureRecorded, GuardrailTriggered

pytestmark = pytest.mark.unit
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _event(payload: GuardrailTriggered | AuthFailureRecorded) -> CloudEvent:
    return CloudEvent(id="e1", source="switchyard/gateway", type=payload.EVENT_TYPE, data={})


def test_guardrail_refusals_and_redactions() -> None:
    refused = GuardrailTriggered(
        tenant_id="org1",
        user_id="u7",
        api_key_id="k1",
        request_id="req_1",
        endpoint="/v1/chat/completions",
        stage="input",
        guardrail="prompt_injection",
        rule="ignore_previous_instructions",
        action="refused",
        code="prompt_injection_detected",
        at=AT,
    )
    draft = draft_for(_event(refused), refused)
    assert (draft.actor, draft.action, draft.resource, draft.tenant_id, draft.outcome) == (
        "api_key:k1",
        "guardrail.refused",
        "request/req_1",
        "org1",
        FAILURE,
    )
    assert draft.details["rule"] == "ignore_previous_instructions" and draft.occurred_at == AT
    redacted = refused.model_copy(
        update={
            "action": "redacted",
            "guardrail": "pii",
            "rule": "email",
            "code": None,
            "counts": {"email": 2},
        }
    )
    draft = draft_for(_event(redacted), redacted)
    assert (draft.action, draft.outcome, draft.details["counts"]) == (
        "guardrail.redacted",
        SUCCESS,
        {"email": 2},
    )
    assert "code" not in draft.details


def test_auth_failures_name_the_reason_and_the_client() -> None:
    failed = AuthFailureRecorded(
        reason="invalid_api_key",
        credential="api_key",
        key_prefix="AbCd1234",
        client="10.0.0.1",
        endpoint="/v1/models",
        request_id="req_2",
        at=AT,
    )
    draft = draft_for(_event(failed), failed)
    assert (draft.actor, draft.action, draft.tenant_id, draft.outcome) == (
        "client:10.0.0.1",
        "auth.failure",
        UNKNOWN_TENANT,
        FAILURE,
    )
    assert draft.details["key_prefix"] == "AbCd1234" and "throttled" not in draft.details
    throttled = failed.model_copy(update={"throttled": True, "reason": "too_many_auth_failures"})
    assert draft_for(_event(throttled), throttled).action == "auth.throttled"
