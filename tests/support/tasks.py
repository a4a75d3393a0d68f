"""Tasks the bus tests publish (one short chat turn, stamped now), and their answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from switchyard.common.events import ChatRequest, TaskCompleted, TaskSubmitted, Usage


def hello_task(task_id: str, *, tenant_id: str = "acme") -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        tenant_id=tenant_id,
        request=ChatRequest(messages=[{"role": "user", "content": "hello"}]),
        submitted_at=datetime.now(UTC),
    )


def completed(task_id: str, tenant_id: str = "acme", *, content: str = "ok", **fields: Any) -> TaskCompleted:
    """A task's answer as an executor publishes it, finished now: `content` in one attempt of
    openai/gpt-4o-mini (tier fast), 10 prompt and 5 completion tokens, unless `fields` say otherwise."""
    answer: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "tier": "fast",
        "finish_reason": "stop",
        "usage": Usage(prompt_tokens=10, completion_tokens=5),
        "attempts": 1,
        "latency_ms": 1.0,
        "completed_at": datetime.now(UTC),
        **fields,
    }
    return TaskCompleted(task_id=task_id, tenant_id=tenant_id, content=content, **answer)


def completed_of(task: TaskSubmitted, content: str = "ok", **fields: Any) -> TaskCompleted:
    """`task`'s answer (its user's too): `completed` with its ids."""
    return completed(task.task_id, task.tenant_id, content=content, **{"user_id": task.user_id, **fields})
