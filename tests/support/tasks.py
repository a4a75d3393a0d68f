"""Tasks the bus tests publish: one short chat turn, stamped now."""

from __future__ import annotations

from datetime import UTC, datetime

from switchyard.common.events import ChatRequest, TaskSubmitted


def hello_task(task_id: str, *, tenant_id: str = "acme") -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        tenant_id=tenant_id,
        request=ChatRequest(messages=[{"role": "user", "content": "hello"}]),
        submitted_at=datetime.now(UTC),
    )
