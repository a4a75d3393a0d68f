"""What happened after a task was answered, as its users judge it: the learning signal for the classifier.

No free text: a rating, optionally the task type the user says it really was, and a reason from a fixed
list. The ledger keeps these events, so heads can be retrained from the platform's own record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload
from switchyard.common.events.tasks import TaskType

Rating = Literal["good", "bad"]
FeedbackReason = Literal["wrong_type", "poor_answer", "too_slow", "too_expensive", "other"]


class TaskFeedback(EventPayload):
    """A user rated a task's answer (through `POST /v1/feedback` on the gateway, or another system)."""

    EVENT_TYPE = "switchyard.task.feedback.v1"
    SUBJECT = subjects.TASK_FEEDBACK

    task_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    tenant_id: str = Field(min_length=1, max_length=64)
    user_id: str | None = None
    api_key_id: str | None = None
    rating: Rating
    task_type: TaskType | None = Field(default=None, description="the type the task really was, if known")
    reason: FeedbackReason | None = None
    at: datetime
