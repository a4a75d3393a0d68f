"""An Idempotency-Key's task ids: a key used again after its task expired makes a new task, never one
under the expired task's id (billing charges a task id once, and the ledger records its events once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchyard.gateway.taskapi.idempotency import task_ids
from switchyard.gateway.taskapi.store import KEEP_S


def test_a_key_used_after_its_task_expired_gets_another_task_id() -> None:
    first = datetime(2026, 12, 6, 12, tzinfo=UTC)
    week = timedelta(seconds=KEEP_S)
    new, *found = task_ids("org", "order-42", first)
    assert found[0] != new, "the previous period's task is looked up"
    for later in (first + timedelta(minutes=1), first + week - timedelta(seconds=1)):
        # A retry while the first task is kept finds it: under its own id, or the previous period's.
        assert new in task_ids("org", "order-42", later)
    for expired in (first + week, first + 2 * week, first + 30 * week):
        assert task_ids("org", "order-42", expired)[0] != new
    # Per organisation and key.
    assert not {new} & set(task_ids("org2", "order-42", first) + task_ids("org", "order-43", first))
