"""Billing: usage priced into cost entries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload


class UsageRecorded(EventPayload):
    EVENT_TYPE = "switchyard.billing.usage.v1"
    SUBJECT = subjects.USAGE_RECORDED

    task_id: str
    tenant_id: str
    user_id: str | None = None
    model: str
    provider: str
    tier: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    priced: bool = True
    kind: Literal["task", "call"] = "task"  # call: a billable provider call beside the delivered answer
    call_event_id: str | None = None
