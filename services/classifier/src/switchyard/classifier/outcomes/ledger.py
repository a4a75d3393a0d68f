"""What the ledger says happened to each classified task: the predicted type, the users' feedback, and
whether a cheap answer was enough (failures and escalations say it was not).

Pure functions over ledger entries (action + details, as the audit service writes them); no prompt text is
needed or available here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from switchyard.common.events.tasks import EMBEDDING

ACTIONS = ("task.classify", "task.feedback", "task.complete", "task.fail", "task.timeout", "provider.call")
# Calls that say nothing of whether the model could do the task: stopped by the executor (a race's
# losers, a cancellation) or cut by the client's own wait, shorter than a call gets (`cut_short`).
STOPPED_CALLS = ("cancelled", "cut_short")
# Failures that say nothing of whether the model could do the task: its client cancelled it, the
# executor running it stopped, or its bound passed while it waited for an executor (never sent); the
# provider was unreachable, refused the key, was out of credit, busy or behind an open breaker; the routing
# found no model to try (a name, an allow-list, a capability, a window none has); a content policy any
# model applies. A timeout, a garbled answer, a window too small for the prompt or a provider's refusal of
# the request as sent stay evidence that a cheap answer fell short.
STOPPED_TASKS = frozenset(
    {
        "task_cancelled",
        "task_expired",
        "executor_stopping",
        "provider_auth",
        "provider_quota_exhausted",
        "provider_network",
        "provider_rate_limited",
        "provider_overloaded",
        "provider_circuit_open",
        "provider_content_policy",
        "no_provider_available",
        "model_not_found",
        "model_not_allowed",
        "model_lacks_capability",
        "capability_unavailable",
        "context_length_exceeded",
    }
)


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    seq: int
    occurred_at: datetime
    tenant_id: str
    action: str
    details: dict[str, Any]


@dataclass(slots=True)
class TaskOutcome:
    tenant_id: str
    task_id: str
    classified_at: datetime
    predicted: str
    model_version: str
    rating: str | None = None
    corrected_type: str | None = None
    reason: str | None = None
    completed: bool = False
    failed: bool = False
    attempts: int = 0
    provider_calls: int = 0
    stopped: bool = False  # ended by no doing of the model's (STOPPED_TASKS, a call cut by its client)

    @property
    def type_label(self) -> str | None:
        """The type the task really was: the user's correction, else the prediction a user confirmed."""
        if self.corrected_type:
            return self.corrected_type
        if self.rating == "good":
            return self.predicted
        return None

    @property
    def cheap_failed(self) -> bool | None:
        """Did the first answer fall short? Failure, escalation (more than one attempt or call), or a bad
        rating for the answer itself; None when the task has no recorded end, or failed by no doing of the
        model's (`stopped`: cancelled, cut by its client's short wait, its executor stopped, its provider
        unreachable or busy, no model to route it to: `STOPPED_TASKS`)."""
        bad_answer = self.rating == "bad" and self.reason not in ("wrong_type", "too_slow", "too_expensive")
        if (self.failed and not self.stopped) or self.attempts > 1 or self.provider_calls > 1 or bad_answer:
            return True
        if self.completed:
            return False
        return None


def outcomes(records: Iterable[LedgerRecord]) -> list[TaskOutcome]:
    """One outcome per classified task, keyed by (tenant, task id): feedback or results from another tenant
    never attach to a task. The latest feedback of a task wins. Embedding tasks are left out (their
    classification is a pass-through, not a prediction)."""
    by_task: dict[tuple[str, str], TaskOutcome] = {}
    later: list[LedgerRecord] = []
    for rec in sorted(records, key=lambda r: r.seq):
        task_id = str(rec.details.get("task_id") or "")
        if not task_id:
            continue
        if rec.action == "task.classify":
            key = (rec.tenant_id, task_id)
            if rec.details.get("type") == EMBEDDING:
                continue  # passed through unclassified: no prediction to judge, nothing to learn
            if key not in by_task:
                by_task[key] = TaskOutcome(
                    tenant_id=rec.tenant_id,
                    task_id=task_id,
                    classified_at=rec.occurred_at,
                    predicted=str(rec.details.get("type")),
                    model_version=str(rec.details.get("model_version", "")),
                )
        else:
            later.append(rec)
    for rec in later:
        found = by_task.get((rec.tenant_id, str(rec.details["task_id"])))
        if found is None:
            continue
        d = rec.details
        if rec.action == "task.feedback":
            found.rating, found.corrected_type, found.reason = (
                d.get("rating"),
                d.get("task_type"),
                d.get("reason"),
            )
        elif rec.action == "task.complete":
            found.completed = True
            found.attempts = max(found.attempts, int(d.get("attempts") or 0))
        elif rec.action in ("task.fail", "task.timeout"):
            found.failed = True
            found.stopped = found.stopped or d.get("error_code") in STOPPED_TASKS
        elif rec.action == "provider.call":
            if d.get("result") in STOPPED_CALLS:
                found.stopped = found.stopped or d.get("result") == "cut_short"
            else:
                found.provider_calls += 1
    return sorted(by_task.values(), key=lambda o: (o.classified_at, o.tenant_id, o.task_id))
