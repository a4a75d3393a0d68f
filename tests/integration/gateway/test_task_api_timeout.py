"""A task submitted through the task API (/v1/tasks) that is followed for SWITCHYARD_ASYNC_TASK_TIMEOUT_S
without a result is timed out on the bus (`task.timed_out`, once), as the chat path does when its client's
wait ends, so an executor still running it stops (cancellations.py) instead of spending on for nobody. A task
whose result came is not. Real nats-server, real task bucket and admission."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.common import bus, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskCompleted, TaskFailed, TaskTimedOut
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.taskapi.service import TaskRuns
from switchyard.gateway.taskapi.store import TaskStore, tasks_bucket, with_outcome
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import Principal
from tests.integration.gateway.test_abandoned_tasks import _cut, _task, connected
from tests.integration.gateway.test_inflight import _replica
from tests.integration.gateway.test_task_outcomes_counted import _counts, counted_since

pytestmark = pytest.mark.integration
__all__ = ["connected"]  # the fixture, used by name


async def test_a_task_followed_to_its_timeout_is_timed_out_on_the_bus_once(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    nc, publisher = connected
    js = nc.jetstream()
    replica = await _replica(js, "g1")
    runs = TaskRuns(
        TaskStore(await tasks_bucket(js), js), TaskClient(nc, publisher), publisher, timeout_s=0.5
    )
    heard: list[TaskTimedOut] = []

    async def on_timed_out(msg: Msg) -> None:
        payload = decode(msg.data, (TaskTimedOut,))[1]
        assert isinstance(payload, TaskTimedOut)
        heard.append(payload)

    await nc.subscribe(subjects.TASK_TIMED_OUT, cb=on_timed_out)
    counted = _counts()
    stuck, answered = _task(), _task()
    await runs.submit(task=stuck, admitted=await replica.admit(stuck.task_id))
    await runs.submit(task=answered, admitted=await replica.admit(answered.task_id))
    await publisher.publish(
        _cut(answered),
        subject=subjects.result_subject(answered.tenant_id, answered.task_id),
        tenant_id="acme",
    )
    await asyncio.sleep(1.5)
    assert [(e.task_id, e.tenant_id) for e in heard] == [(stuck.task_id, "acme")]
    assert heard[0].waited_ms >= 500
    assert (await runs.store.get(stuck.task_id)).status == "timed_out"  # type: ignore[union-attr]
    assert counted_since(counted) == {"completed": 0, "failed": 0, "timed_out": 1, "cancelled": 1}
    await runs.stop()


class _Racing(TaskStore):
    """A replica's store whose status read is followed, before it writes, by another replica's write: the
    task's outcome stored by the replica following it (the moment a DELETE can meet its result)."""

    other: TaskStore
    outcome: TaskState | None = None

    async def stored_outcome(self, tenant_id: str, task_id: str) -> TaskCompleted | TaskFailed | None:
        found = await super().stored_outcome(tenant_id, task_id)
        if self.outcome is not None:
            await self.other.put(self.outcome)
            self.outcome = None
        return found


async def test_a_cancellation_meeting_the_outcome_leaves_the_outcome(
    connected: tuple[Client, bus.EventPublisher],
) -> None:
    """DELETE on one replica while the replica following the task stores its result: the task ends as
    answered (its tokens are spent and billed) and DELETE says so; it was `cancelled`, its result lost."""
    nc, publisher = connected
    js = nc.jetstream()
    bucket = await tasks_bucket(js)
    following = TaskRuns(TaskStore(bucket, js), TaskClient(nc, publisher), publisher, timeout_s=30)
    asked = _Racing(bucket, js)
    asked.other = following.store
    other = TaskRuns(asked, TaskClient(nc, publisher), publisher, timeout_s=30)
    task = _task()
    replica = await _replica(js, "g1")
    queued = await following.submit(task=task, admitted=await replica.admit(task.task_id))
    asked.outcome = with_outcome(queued, _cut(task).model_copy(update={"error_code": "provider_timeout"}))
    principal = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sk-sy-k1")
    answered = await other.cancel(principal=principal, task_id=task.task_id)
    stored = await following.store.get(task.task_id)
    assert (answered.status, stored and stored.status) == ("failed", "failed")
    await following.stop()
