"""Billing: usage priced into cost entries; budget alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload, Money, TokenCount


class UsageRecorded(EventPayload):
    EVENT_TYPE = "switchyard.billing.usage.v1"
    SUBJECT = subjects.USAGE_RECORDED

    task_id: str
    tenant_id: str
    user_id: str | None = None
    model: str
    provider: str
    tier: str
    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    cache_read_tokens: TokenCount = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: TokenCount = 0  # of prompt_tokens: written to it (Anthropic)
    cost_usd: Money
    priced: bool = True
    kind: Literal["task", "call"] = "task"  # call: a billable provider call beside the delivered answer
    call_event_id: str | None = None
    cached: bool = False  # the answer came from the gateway's cache: its tokens cost no provider anything
    # the `version` of the routing policy whose prices gave cost_usd (None: an entry charged before it was
    # recorded)
    policy_version: str | None = None


class BudgetAlert(EventPayload):
    """A budget passed a threshold: once per threshold (50, 80, 100 %), account, period and budget (one
    changed within its period is alerted on again). The event id is derived from those, so a re-publish is
    dropped by JetStream and by every consumer."""

    EVENT_TYPE = "switchyard.billing.budget_alert.v1"
    SUBJECT = subjects.BUDGET_ALERT

    alert_id: str
    tenant_id: str
    scope: Literal["user", "org"] = Field(description="user: a user's daily budget; org: the monthly one")
    user_id: str | None = None
    period: str = Field(description="YYYYMMDD (user) or YYYYMM (org), UTC")
    threshold_pct: int = Field(description="50, 80 or 100")
    limit_usd: str = Field(description="the budget, decimal string")
    spent_usd: str = Field(description="billed spend in the period when it passed the threshold")
    at: datetime
