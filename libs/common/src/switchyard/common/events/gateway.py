"""Events of the gateway's native task API that the pipeline does not produce itself."""

from __future__ import annotations

from datetime import datetime

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload


class TaskCancelled(EventPayload):
    """A client cancelled the task: its result will not be delivered and its budget reservation is
    released. Work already running upstream may still finish (and is then billed as usual)."""

    EVENT_TYPE = "switchyard.task.cancelled.v1"
    SUBJECT = subjects.TASK_CANCELLED

    task_id: str
    tenant_id: str
    user_id: str | None = None
    cancelled_at: datetime
