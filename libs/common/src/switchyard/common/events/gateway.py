"""Events of the gateway that the pipeline does not produce itself: task API cancellations, guardrail
decisions and authentication failures."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from switchyard.common import subjects
from switchyard.common.events.base import EventPayload


class TaskCancelled(EventPayload):
    """A client cancelled the task, or the client of a completion went away: its result will not be
    delivered. An executor running it stops it (its provider call is cut and billed for what the upstream
    already spent, estimated) and ends it with `task_cancelled`; one that has not started it yet skips it.
    Executors read it from the stream, so one that was disconnected or restarting hears it too; one made
    (`cancelled_at`) longer ago than an executor remembers (10 minutes) is not applied."""

    EVENT_TYPE = "switchyard.task.cancelled.v1"
    SUBJECT = subjects.TASK_CANCELLED

    task_id: str
    tenant_id: str
    user_id: str | None = None
    cancelled_at: datetime
    reason: Literal["client", "disconnected"] = Field(
        default="client",
        description="client: `DELETE /v1/tasks/{id}` or another system; disconnected: the client of a "
        "completion (streamed or not) went away before its answer ended",
    )


class GuardrailTriggered(EventPayload):
    """A gateway guardrail refused a request or redacted part of it (or of the answer). Names the rule,
    never the text it matched."""

    EVENT_TYPE = "switchyard.gateway.guardrail.v1"
    SUBJECT = subjects.SECURITY_GUARDRAIL

    tenant_id: str
    user_id: str | None = None
    api_key_id: str | None = None
    request_id: str | None = None
    endpoint: str = Field(description="the HTTP path of the request")
    stage: Literal["input", "output"]
    guardrail: str = Field(description="which guardrail: prompt_injection, pii, prompt_size")
    rule: str = Field(description="which rule of it (a pattern name, a PII kind, a limit)")
    action: Literal["refused", "redacted"]
    code: str | None = Field(default=None, description="the error code the client got, when refused")
    counts: dict[str, int] = Field(default_factory=dict, description="redactions by kind")
    at: datetime


class AuthFailureRecorded(EventPayload):
    """A request to the gateway failed authentication, or was throttled after repeated failures. Names the
    reason and the client, never the credential (an API key by its public prefix at most)."""

    EVENT_TYPE = "switchyard.gateway.auth_failure.v1"
    SUBJECT = subjects.SECURITY_AUTH_FAILURE

    reason: str = Field(description="the error code the client got (invalid_api_key, token_expired, ...)")
    credential: Literal["none", "api_key", "jwt"]
    key_prefix: str | None = Field(default=None, description="the API key's public prefix, if well-formed")
    client: str = Field(description="the client's address")
    endpoint: str
    throttled: bool = Field(default=False, description="refused with 429 for repeated failures")
    tenant_id: str | None = Field(default=None, description="only when a valid credential lacked a right")
    request_id: str | None = None
    at: datetime
