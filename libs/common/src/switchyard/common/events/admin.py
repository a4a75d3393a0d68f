"""The gateway's admin API: every change to organisations, users, keys and limits, for the audit ledger.

Secrets never appear here: a created or rotated key is named by its id and prefix, never its plaintext
or hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload

AdminActionName = Literal[
    "organization.created",
    "organization.updated",
    "organization.erased",
    "user.created",
    "user.updated",
    "user.disabled",
    "key.created",
    "key.updated",
    "key.rotated",
    "key.revoked",
    "throttle.set",
    "webhook.created",
    "webhook.deleted",
]


class AdminActionRecorded(EventPayload):
    EVENT_TYPE = "switchyard.admin.action.v1"
    SUBJECT = subjects.ADMIN_ACTION

    action: AdminActionName
    tenant_id: str = Field(description="the organisation the change belongs to")
    actor_user_id: str | None = Field(default=None, description="who did it (user id)")
    actor_key_id: str | None = Field(default=None, description="with which credential (key id, or jwt:<sub>)")
    target_type: Literal["organization", "user", "key", "throttle", "webhook"]
    target_id: str
    changes: dict[str, Any] = Field(default_factory=dict, description="the fields set; never a secret")
    request_id: str | None = None
    at: datetime
