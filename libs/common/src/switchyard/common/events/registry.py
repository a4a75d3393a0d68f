"""CloudEvents `type` -> payload model, for decoding any event seen on the bus."""

from __future__ import annotations

from switchyard.common import subjects
from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.base import EventPayload
from switchyard.common.events.billing import BudgetAlert, UsageRecorded
from switchyard.common.events.feedback import TaskFeedback
from switchyard.common.events.gateway import AuthFailureRecorded, GuardrailTriggered, TaskCancelled
from switchyard.common.events.results import (
    ProviderCallRecorded,
    TaskCompleted,
    TaskFailed,
    TaskTimedOut,
)
from switchyard.common.events.tasks import (
    TaskClassified,
    TaskRouted,
    TaskSubmitted,
)

_MODELS: tuple[type[EventPayload], ...] = (
    TaskSubmitted,
    TaskClassified,
    TaskRouted,
    ProviderCallRecorded,
    TaskCompleted,
    TaskFailed,
    TaskTimedOut,
    UsageRecorded,
    BudgetAlert,
    AdminActionRecorded,
    TaskCancelled,
    GuardrailTriggered,
    AuthFailureRecorded,
    TaskFeedback,
)
EVENT_TYPES: dict[str, type[EventPayload]] = {m.EVENT_TYPE: m for m in _MODELS}


def event_model(event_type: str) -> type[EventPayload] | None:
    return EVENT_TYPES.get(event_type)


def event_type_of(payload: EventPayload) -> str:
    return type(payload).EVENT_TYPE


def subject_of(payload: EventPayload) -> str | None:
    """The one subject `payload` is published on: its type's, or its task's result subject."""
    if isinstance(payload, TaskCompleted | TaskFailed):
        return subjects.result_subject(payload.task_id)
    return type(payload).SUBJECT


def tenant_of(payload: EventPayload) -> str | None:
    """The tenant `payload` belongs to, where it names one (a classified or routed task: its task's)."""
    if isinstance(payload, TaskClassified | TaskRouted):
        return payload.task.tenant_id
    value = getattr(payload, "tenant_id", None)
    return value if isinstance(value, str) else None
