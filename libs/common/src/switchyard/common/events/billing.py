"""Billing: usage priced into cost entries."""

from __future__ import annotations

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
