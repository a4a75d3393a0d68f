"""What each event says in the ledger: actor, action, resource, outcome and details.

Details carry identifiers, timings, token counts, costs and models — never prompt or answer text, and never
secrets: a prompt is represented by its length and its keyed digest (HMAC-SHA256 under its tenant's key,
`digests.py`: it confirms nothing to whoever lacks the key), error messages are redacted and truncated. An
event that carries a valid W3C `traceparent` adds its `trace_id` and `span_id` (the span that published it,
or with tracing off the caller's), so an entry in a SIEM leads to its trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from switchyard.audit import digests, provenance
from switchyard.audit.digests import TenantKey
from switchyard.common import tracing
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import (
    EmbeddingRequest,
    ProviderCallRecorded,
    TaskClassified,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
    TaskTimedOut,
    UsageRecorded,
)
from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.base import EventPayload
from switchyard.common.events.feedback import TaskFeedback
from switchyard.common.events.gateway import AuthFailureRecorded, GuardrailTriggered, TaskCancelled
from switchyard.common.events.registry import tenant_of
from switchyard.common.logs import redact

SUCCESS = "success"
FAILURE = "failure"
MAX_MESSAGE_CHARS = 300
MAX_REJECTED = 20
UNKNOWN_TENANT = "-"


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry before it has a place in the chain (seq, recorded_at and hashes come when appended)."""

    event_id: str
    occurred_at: datetime
    tenant_id: str
    actor: str
    action: str
    resource: str
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)
    # where the event came from, as the server has it (provenance.py); None: not known (written v1)
    provenance: dict[str, Any] | None = None


def entry_tenant(event: CloudEvent, payload: EventPayload) -> str:
    # Clamped to the column: an over-long value from another system must not make its entry unwritable.
    return (tenant_of(payload) or event.tenantid or UNKNOWN_TENANT)[:64]


def needs_key(payload: EventPayload) -> bool:
    """Whether the entry holds a digest of content, under the key of its tenant (`entry_tenant`)."""
    return isinstance(payload, TaskSubmitted) or (
        isinstance(payload, TaskCompleted) and payload.embedding is not None
    )


def draft_for(
    event: CloudEvent, payload: EventPayload, key: TenantKey | None = None, *, subject: str | None = None
) -> EntryDraft:
    """`key`: the entry's tenant's digest key; without it (the organisation was erased) content digests are
    left out. `subject`: the one the event arrived on (its provenance)."""
    action, resource, outcome, details, when = _describe(payload, key)
    actor = _actor(payload) or _service(event.source)
    # Clamped to the columns: an over-long value from another system must not make its entry unwritable.
    return EntryDraft(
        event_id=event.id,
        occurred_at=when or event.time or datetime.now(UTC),
        tenant_id=entry_tenant(event, payload),
        actor=actor[:200],
        action=(action or _action_of(event.type))[:64],
        resource=(resource or (f"task/{event.subject}" if event.subject else f"event/{event.id}"))[:200],
        outcome=outcome,
        details={"event_type": event.type, **_trace(event), **details},
        provenance=None if subject is None else provenance.of_subject(subject),
    )


def _trace(event: CloudEvent) -> dict[str, str]:
    context = tracing.parse(event.traceparent)
    return {} if context is None else tracing.ids(context)


Description = tuple[str | None, str | None, str, dict[str, Any], datetime | None]


def _describe(p: EventPayload, key: TenantKey | None) -> Description:
    details: dict[str, Any]
    if isinstance(p, TaskSubmitted):
        return "task.submit", f"task/{p.task_id}", SUCCESS, _submitted(p, key), p.submitted_at
    if isinstance(p, TaskClassified):
        c = p.classification
        details = {
            "task_id": p.task.task_id,
            "type": c.type,
            "confidence": _r(c.confidence),
            "complexity": _r(c.complexity),
            "urgency": _r(c.urgency),
            "model_version": c.model_version,
            "latency_ms": _r(c.latency_ms),
            "truncated": c.truncated,
        }
        return "task.classify", f"task/{p.task.task_id}", SUCCESS, details, None
    if isinstance(p, TaskRouted):
        return "task.route", f"task/{p.task.task_id}", SUCCESS, _routed(p), None
    if isinstance(p, ProviderCallRecorded):
        details = {
            "task_id": p.task_id,
            "attempt": p.attempt,
            "provider": p.provider,
            "model": p.model,
            "result": p.outcome,
            "latency_ms": _r(p.latency_ms),
            "ttft_ms": _r(p.ttft_ms),
            "prompt_tokens": p.usage.prompt_tokens,
            "completion_tokens": p.usage.completion_tokens,
            "usage_estimated": p.usage_estimated or None,  # counted by the executor, not the upstream
            "error": _message(p.error),
        }
        outcome = SUCCESS if p.outcome == "ok" else FAILURE
        return "provider.call", f"task/{p.task_id}", outcome, _compact(details), None
    if isinstance(p, TaskCompleted):
        details = {
            "task_id": p.task_id,
            "user_id": p.user_id,
            "api_key_id": p.api_key_id,
            "model": p.model,
            "provider": p.provider,
            "tier": p.tier,
            "finish_reason": p.finish_reason,
            "prompt_tokens": p.usage.prompt_tokens,
            "completion_tokens": p.usage.completion_tokens,
            "usage_estimated": p.usage_estimated or None,
            "attempts": p.attempts,
            "latency_ms": _r(p.latency_ms),
            "answer_chars": len(p.content) if p.embedding is None else None,
            # an embedding task's vectors by their digest, never the numbers
            "embedding": _vectors(p, key),
            # answered from the gateway's cache: which kind, whose answer, how similar
            "cache": p.cache.model_dump(exclude_none=True) if p.cache else None,
        }
        return "task.complete", f"task/{p.task_id}", SUCCESS, _compact(details), p.completed_at
    if isinstance(p, TaskFailed):
        details = {
            "task_id": p.task_id,
            "user_id": p.user_id,
            "error_code": p.error_code,
            "error_message": _message(p.error_message),
            "attempts": p.attempts,
        }
        return "task.fail", f"task/{p.task_id}", FAILURE, _compact(details), p.failed_at
    if isinstance(p, TaskTimedOut):
        details = {"task_id": p.task_id, "waited_ms": _r(p.waited_ms)}
        return "task.timeout", f"task/{p.task_id}", FAILURE, details, None
    if isinstance(p, UsageRecorded):
        details = {
            "task_id": p.task_id,
            "user_id": p.user_id,
            "model": p.model,
            "provider": p.provider,
            "tier": p.tier,
            "prompt_tokens": p.prompt_tokens,
            "completion_tokens": p.completion_tokens,
            "cost_usd": round(p.cost_usd, 10),
            "priced": p.priced,
            "cached": p.cached or None,
        }
        # the price list that charged it, null for a charge made before billing recorded it
        details = {**_compact(details), "policy_version": p.policy_version}
        return "billing.usage", f"task/{p.task_id}", SUCCESS, details, None
    if isinstance(p, AdminActionRecorded):
        details = {"changes": p.changes or None, "request_id": p.request_id, "key_id": p.actor_key_id}
        return f"admin.{p.action}", f"{p.target_type}/{p.target_id}", SUCCESS, _compact(details), p.at
    if isinstance(p, TaskCancelled):
        details = {"task_id": p.task_id, "reason": p.reason}
        return "task.cancel", f"task/{p.task_id}", SUCCESS, details, p.cancelled_at
    if isinstance(p, TaskFeedback):
        details = {
            "task_id": p.task_id,
            "user_id": p.user_id,
            "api_key_id": p.api_key_id,
            "rating": p.rating,
            "task_type": p.task_type,
            "reason": p.reason,
        }
        return "task.feedback", f"task/{p.task_id}", SUCCESS, _compact(details), p.at
    if isinstance(p, GuardrailTriggered):  # names the rule, never the matched text (the event has none)
        details = {
            "request_id": p.request_id,
            "endpoint": p.endpoint,
            "stage": p.stage,
            "guardrail": p.guardrail,
            "rule": p.rule,
            "code": p.code,
            "counts": p.counts or None,
            "user_id": p.user_id,
            "api_key_id": p.api_key_id,
        }
        outcome = FAILURE if p.action == "refused" else SUCCESS
        return f"guardrail.{p.action}", f"request/{p.request_id}", outcome, _compact(details), p.at
    if isinstance(p, AuthFailureRecorded):  # never the credential: a key's public prefix at most
        details = {
            "request_id": p.request_id,
            "endpoint": p.endpoint,
            "reason": p.reason,
            "credential": p.credential,
            "key_prefix": p.key_prefix,
            "client": p.client,
            "throttled": p.throttled or None,
        }
        action = "auth.throttled" if p.throttled else "auth.failure"
        return action, f"request/{p.request_id}", FAILURE, _compact(details), p.at
    return None, None, SUCCESS, {}, None  # a type added after this service: recorded, not described


def _digest(key: TenantKey | None, data: bytes) -> str | None:
    return None if key is None else digests.keyed(key, data)


def _submitted(p: TaskSubmitted, key: TenantKey | None) -> dict[str, Any]:
    request = p.request
    prompt = request.prompt_text()
    common = {
        "task_id": p.task_id,
        "user_id": p.user_id,
        "api_key_id": p.api_key_id,
        "origin": p.origin,
        "priority": p.priority,
        "requested_model": request.model,
    }
    if isinstance(request, EmbeddingRequest):
        # the texts by their digest (of the JSON list: no separator could make two lists look alike)
        return _compact(
            {
                **common,
                "kind": request.kind,
                "inputs": len(request.input),
                digests.INPUT: _digest(key, digests.inputs_bytes(request.input)),
                "input_chars": sum(len(text) for text in request.input),
                "dimensions": request.dimensions,
                "deadline": p.deadline.isoformat() if p.deadline else None,
            }
        )
    return _compact(
        {
            **common,
            "stream": request.stream,
            "max_tokens": request.max_tokens,
            "messages": len(request.messages),
            digests.PROMPT: _digest(key, digests.prompt_bytes(prompt)),
            "prompt_chars": len(prompt),
            "deadline": p.deadline.isoformat() if p.deadline else None,
        }
    )


def _vectors(p: TaskCompleted, key: TenantKey | None) -> dict[str, Any] | None:
    """Where the vectors were kept (in the result event, or the object store), never the numbers, and their
    keyed digest (vectors are a function of the inputs: their plain SHA-256 would confirm a guessed input
    as well). Not the object's name: it is made of the tenant and task id the entry already has, and
    expires within minutes."""
    e = p.embedding
    if e is None:
        return None
    kept = "inline" if e.object is None else "object"
    digest = _digest(key, digests.vectors_bytes(e.sha256))
    return _compact({"count": e.count, "dimensions": e.dimensions, digests.VECTORS: digest, "kept": kept})


def _routed(p: TaskRouted) -> dict[str, Any]:
    d = p.decision
    reasons = d.reasons
    return _compact(
        {
            "task_id": p.task.task_id,
            "strategy": d.strategy,
            "strategy_why": _message(why) if isinstance(why := reasons.get("strategy_why"), str) else None,
            # parallel: how many run at once (each billed); cascade: the checks that escalate
            "fan_out": d.fan_out if d.strategy == "parallel" else None,
            "checks": d.checks or None,
            "tier": d.tier,
            "chosen": d.candidates[0].model,
            "candidates": [c.model for c in d.candidates],
            "policy_version": d.policy_version,
            # the strategy's (a race: its racers'; a cascade: the cheap step and the likely escalation)
            "estimated_cost_usd": d.estimated_cost_usd,
            "estimated_prompt_tokens": d.estimated_prompt_tokens,
            "wanted_tier": reasons.get("wanted_tier"),
            "pinned": reasons.get("pinned"),
            "why": _message(reasons.get("why")) if isinstance(reasons.get("why"), str) else None,
            "rejected": _rejected(reasons.get("rejected")),
        }
    )


def _rejected(value: Any) -> list[dict[str, str]] | None:
    if not isinstance(value, list) or not value:
        return None
    return [
        {"model": str(r.get("model", "")), "reason": _message(str(r.get("reason", ""))) or ""}
        for r in value[:MAX_REJECTED]
        if isinstance(r, dict)
    ]


def _actor(p: EventPayload) -> str | None:
    """Who acted, for events a person caused; None for a service's own events."""
    if isinstance(p, TaskSubmitted):
        return _submitter(p)
    if isinstance(p, AdminActionRecorded):
        if p.actor_user_id:
            return f"user:{p.actor_user_id}"
        return f"api_key:{p.actor_key_id}" if p.actor_key_id else None
    if isinstance(p, TaskCancelled) and p.user_id:
        return f"user:{p.user_id}"
    if isinstance(p, GuardrailTriggered):
        return f"api_key:{p.api_key_id}" if p.api_key_id else (f"user:{p.user_id}" if p.user_id else None)
    if isinstance(p, AuthFailureRecorded):
        return f"client:{p.client}"
    return None


def _submitter(p: TaskSubmitted) -> str:
    if p.api_key_id:
        return f"api_key:{p.api_key_id}"
    if p.user_id:
        return f"user:{p.user_id}"
    return f"tenant:{p.tenant_id}"


def _service(source: str) -> str:
    prefix = "switchyard/"
    return f"service:{source[len(prefix) :]}" if source.startswith(prefix) else f"source:{source}"


def _action_of(event_type: str) -> str:
    name = event_type.removeprefix("switchyard.")
    head, _, version = name.rpartition(".")
    return head if version.startswith("v") and head else name


def _message(text: str | None) -> str | None:
    return None if text is None else redact(text)[:MAX_MESSAGE_CHARS]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _compact(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if v is not None}
