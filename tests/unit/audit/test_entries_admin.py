from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchyard.audit.entries import draft_for
from switchyard.common.envelope import CloudEvent
from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.gateway import TaskCancelled

pytestmark = pytest.mark.unit
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _event(payload: AdminActionRecorded | TaskCancelled) -> CloudEvent:
    return CloudEvent(id="e1", source="switchyard/gateway", type=payload.EVENT_TYPE, data={})


def test_admin_actions_name_the_person_the_target_and_the_change() -> None:
    payload = AdminActionRecorded(
        action="key.revoked",
        tenant_id="org1",
        actor_user_id="u7",
        actor_key_id="k1",
        target_type="key",
        target_id="k9",
        changes={"revoked": True},
        request_id="req_1",
        at=AT,
    )
    draft = draft_for(_event(payload), payload)
    assert (draft.actor, draft.action, draft.resource, draft.tenant_id) == (
        "user:u7",
        "admin.key.revoked",
        "key/k9",
        "org1",
    )
    assert draft.details["changes"] == {"revoked": True} and draft.details["request_id"] == "req_1"
    assert draft.occurred_at == AT


def test_admin_action_by_a_key_alone_and_a_cancellation() -> None:
    by_key = AdminActionRecorded(
        action="throttle.set",
        tenant_id="org1",
        actor_key_id="k1",
        target_type="throttle",
        target_id="global",
        at=AT,
    )
    assert draft_for(_event(by_key), by_key).actor == "api_key:k1"
    cancel = TaskCancelled(task_id="t1", tenant_id="org1", user_id="u7", cancelled_at=AT)
    draft = draft_for(_event(cancel), cancel)
    assert (draft.actor, draft.action, draft.resource) == ("user:u7", "task.cancel", "task/t1")
