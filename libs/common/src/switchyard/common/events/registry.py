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
    """The subject `payload` is published on: its type's, or its task's result subject (see `placement`
    for the others it may come on)."""
    if isinstance(payload, TaskCompleted | TaskFailed):
        return subjects.result_subject(payload.tenant_id, payload.task_id)
    return type(payload).SUBJECT


def placement(payload: EventPayload, subject: str) -> str | None:
    """Whether `payload` may come on `subject`: None when it may; else the tenant token the subject
    carries where it is `payload`'s kind of subject for another tenant ("" where it is no subject of
    its kind at all). Besides `subject_of`'s: a SCOPED type on its subject with its tenant's token, and
    a result on the subject a release before tenant tokens published it on (`result.<task_id>`)."""
    wanted = subject_of(payload)
    if wanted is None or subject == wanted:
        return None
    tenant = tenant_of(payload)
    if isinstance(payload, TaskCompleted | TaskFailed):
        if subject == subjects.legacy_result_subject(payload.task_id):
            return None
        prefix = f"{subjects.RESULT_PREFIX}."
        token, dot, task = subject.removeprefix(prefix).partition(".")
        return token if subject.startswith(prefix) and dot and task == payload.task_id else ""
    if wanted in subjects.SCOPED and tenant is not None and subject.startswith(f"{wanted}."):
        token = subject.removeprefix(f"{wanted}.")
        if "." in token:
            return ""
        return None if token == subjects.tenant_token(tenant) else token
    return ""


def tenant_of(payload: EventPayload) -> str | None:
    """The tenant `payload` belongs to, where it names one (a classified or routed task: its task's)."""
    if isinstance(payload, TaskClassified | TaskRouted):
        return payload.task.tenant_id
    value = getattr(payload, "tenant_id", None)
    return value if isinstance(value, str) else None
