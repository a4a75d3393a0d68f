"""A task event the pipeline cannot read, answered on its result subject where it names its task.

Another system's mistake (a misspelt field, a wrong type) makes a submission an invalid event: it is
dead-lettered (bus.py), and nothing else would happen: its submitter, subscribed to the task's result
subject, would wait for its own timeout without a word. Where the event still names a task and a tenant
that a result can carry, the classifier, the first to read every submission, answers with
`switchyard.task.failed.v1` (`invalid_event`, the dead letter's reason); so does the router for a
classified event it cannot read (its task under `task`: a classification of a type it does not know).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ValidationError, create_model

from switchyard.common import bus, subjects
from switchyard.common.events import TaskFailed, TaskSubmitted

log = logging.getLogger(__name__)

# The task and tenant as a submission must name them (TaskSubmitted's own constraints): a task id that is
# not one names no result subject.
_Named: type[BaseModel] = create_model(
    "_Named",
    task_id=(str, TaskSubmitted.model_fields["task_id"]),
    tenant_id=(str, TaskSubmitted.model_fields["tenant_id"]),
)


@dataclass(frozen=True, slots=True)
class Answer:
    failed: TaskFailed
    subject: str
    origin: str  # the submission's id (its tenant and task where it has none)
    # None: derived from `origin` by the publisher that sends it (`send`), so a redelivery's answer is
    # stored once
    event_id: str | None = None


def answer(
    raw: bytes,
    reason: str,
    *,
    now: datetime,
    at: str | None = None,
    code: str = "invalid_event",
    sender: str | None = None,
) -> Answer | None:
    """The failure that answers the invalid event `raw` (refused for `reason`), or None when it names no
    task to answer. `at`: the field of the event's data holding the task (None: the data is the task).
    `sender`: the tenant answered instead of the one the event names (a TenantMismatch: the tenant of the
    subject it came on; the one it names is never told nor touched)."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    data = event.get("data") if isinstance(event, dict) else None
    if at is not None and isinstance(data, dict):
        data = data.get(at)
    if not isinstance(data, dict):
        return None
    try:
        named = _Named.model_validate(data).model_dump()
    except ValidationError:
        return None
    task_id, tenant_id = str(named["task_id"]), sender or str(named["tenant_id"])
    event_id = event.get("id")
    origin = event_id if isinstance(event_id, str) and event_id else f"{tenant_id}/{task_id}"
    failed = TaskFailed(
        task_id=task_id,
        tenant_id=tenant_id,
        error_code=code,
        error_message=reason,
        failed_at=now,
    )
    return Answer(failed, subjects.result_subject(tenant_id, task_id), origin)


async def tell_submitter(
    publisher: bus.EventPublisher,
    raw: bytes,
    reason: str,
    *,
    at: str | None = None,
    code: str = "invalid_event",
    sender: str | None = None,
) -> None:
    """Publishes the failure that answers the invalid event `raw`, when it names a task (`answer`)."""
    reply = answer(raw, reason, now=datetime.now(UTC), at=at, code=code, sender=sender)
    if reply is None:
        return
    log.info("task %s is invalid; its submitter is told: %s", reply.failed.task_id, reason)
    await send(publisher, reply)


async def send(publisher: bus.EventPublisher, reply: Answer) -> None:
    """Publishes an `answer` on its task's result subject, under its derived event id."""
    tenant_id = reply.failed.tenant_id
    await publisher.publish(
        reply.failed,
        subject=reply.subject,
        event_id=reply.event_id or publisher.derived_id(reply.origin, "invalid-result", tenant_id=tenant_id),
        tenant_id=reply.failed.tenant_id,
        event_subject=reply.failed.task_id,
    )
