"""Routing prompts without running them (`switchyard route --dry-run`): what the router would decide,
had it been sent the rows in order (an adaptive premium threshold learns from the rows before, as in
service; no budget headroom, no health signals).

`Classify` is the boundary to the classifier: the CLI (the composition root) passes the classifier's
offline predictor; tests pass a fake. Nothing here calls a provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from switchyard.common.errors import NoProviderAvailable
from switchyard.common.events import ChatMessage, ChatRequest, Classification, TaskSubmitted
from switchyard.common.policy import Policy
from switchyard.common.tokens import count_prompt
from switchyard.router.adaptive import RollingQuantile, premium_threshold
from switchyard.router.routing import UnknownModel, decide

Classify = Callable[[list[TaskSubmitted]], list[Classification]]


def task_for(row_id: str, prompt: str, *, tenant_id: str) -> TaskSubmitted:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in row_id)[:64] or "row"
    return TaskSubmitted(
        task_id=safe,
        tenant_id=tenant_id,
        request=ChatRequest(messages=[ChatMessage(role="user", content=prompt)]),
        submitted_at=datetime.now(UTC),
    )


def route_rows(
    rows: Iterable[tuple[Any, str]],
    *,
    classify: Classify,
    policy: Policy,
    available: set[str],
    tenant_id: str = "dry-run",
    explain: bool = False,
    batch: int = 256,
) -> Iterator[dict[str, Any]]:
    """One output row per input row, in order: {"id", "tier", "model", "strategy"} (+ reasons)."""
    pending: list[tuple[Any, str]] = []
    recent = RollingQuantile(policy.thresholds.window)

    def flush() -> Iterator[dict[str, Any]]:
        tasks = [task_for(str(row_id), prompt, tenant_id=tenant_id) for row_id, prompt in pending]
        for (row_id, _), task, cls in zip(pending, tasks, classify(tasks), strict=True):
            recent.add(cls.complexity)  # as the router does for every task routed `auto`
            yield _row(row_id, task, cls, policy=policy, available=available, explain=explain, recent=recent)
        pending.clear()

    for row in rows:
        pending.append(row)
        if len(pending) >= batch:
            yield from flush()
    if pending:
        yield from flush()


def _row(
    row_id: Any,
    task: TaskSubmitted,
    cls: Classification,
    *,
    policy: Policy,
    available: set[str],
    explain: bool,
    recent: RollingQuantile,
) -> dict[str, Any]:
    try:
        d = decide(
            request=task.chat(),
            classification=cls,
            policy=policy,
            available=available,
            tenant_id=task.tenant_id,
            prompt_tokens=count_prompt(task.chat()),
            adaptive_premium=premium_threshold(recent),
        )
    except (UnknownModel, NoProviderAvailable) as exc:
        return {"id": row_id, "tier": None, "model": None, "strategy": None, "error": exc.message}
    out: dict[str, Any] = {
        "id": row_id,
        "tier": d.tier,
        "model": d.candidates[0].model,
        "strategy": d.strategy,
    }
    if explain:
        out["candidates"] = [c.model for c in d.candidates]
        out["estimated_cost_usd"] = d.estimated_cost_usd
        out["reasons"] = d.reasons
    return out
