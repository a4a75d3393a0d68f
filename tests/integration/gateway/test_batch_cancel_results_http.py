"""A batch's output file agrees with what its lines were billed, when a line's task is cancelled: by the
batch's cancel as the line's answer arrives (the executor's call ended before the cancellation reached it:
the answer is billed in full), or by a member through the task API (DELETE /v1/tasks/{id}). On the
Batch API's test world (batches_world: two gateway processes, a real nats-server, SQLite, the OpenAI SDK)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from switchyard.common.events import TaskFailed
from tests.integration.gateway.batches_world import (
    Pipeline,
    World,
    held,
    read_jsonl,
    running_batch,
    sdk_client,
    until_status,
    world,
)
from tests.integration.gateway.harness import auth

pytestmark = pytest.mark.integration
__all__ = ["held", "world"]  # fixtures


async def test_a_line_answered_as_its_batch_is_cancelled_is_in_the_output(
    world: World, held: Pipeline
) -> None:
    _, bases, acme, _ = world
    client = sdk_client(bases[0], acme)
    batch = await running_batch(client, held, 4)
    await client.batches.cancel(batch.id)
    async with httpx.AsyncClient(base_url=bases[1]) as http:  # until the runner cancelled their tasks
        for task in held.held:
            while (await http.get(f"/v1/tasks/{task.task_id}", headers=auth(acme.keys["member"]))).json()[
                "status"
            ] != "cancelled":
                await asyncio.sleep(0.01)
    # the executor's calls had ended before the cancellation reached it: the answers come now
    answered = held.held[:]
    held.held.clear()
    for task in answered:
        await held.answer(task)  # billed in full: the answer is the line's
    ended = await until_status(client, batch.id, "cancelled")
    output = await read_jsonl(client, ended.output_file_id) if ended.output_file_id else []
    errors = await read_jsonl(client, ended.error_file_id)
    assert sorted(line["custom_id"] for line in output) == ["r0", "r1"]
    assert all(line["response"]["status_code"] == 200 for line in output)
    assert sorted(line["custom_id"] for line in errors) == ["r2", "r3"]
    assert all(line["error"]["code"] == "batch_cancelled" for line in errors)
    assert (ended.request_counts.completed, ended.request_counts.failed) == (2, 0)


async def test_a_line_whose_task_a_member_cancelled_says_so(world: World, held: Pipeline) -> None:
    _, bases, acme, _ = world
    client = sdk_client(bases[0], acme)
    batch = await running_batch(client, held, 3)
    line = held.held.pop(0)
    async with httpx.AsyncClient(base_url=bases[1]) as http:
        cancelled = await http.delete(f"/v1/tasks/{line.task_id}", headers=auth(acme.keys["member"]))
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    stopped = TaskFailed(  # as the executor ends a task cancelled before its call: nothing billed
        task_id=line.task_id,
        tenant_id=line.tenant_id,
        user_id=line.user_id,
        error_code="task_cancelled",
        error_message="the task was cancelled",
        failed_at=datetime.now(UTC),
    )
    await held._result(stopped)
    await held.release()
    ended = await until_status(client, batch.id, "completed", "failed")
    assert ended.status == "completed"
    assert (ended.request_counts.completed, ended.request_counts.failed) == (2, 1)
    errors = await read_jsonl(client, ended.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r0"]
    response = errors[0]["response"]
    assert response["status_code"] == 409, response
    assert response["body"]["error"]["code"] == "task_cancelled"
    assert response["request_id"] == f"req_{line.task_id}"  # the line's request id: `req_` and its task id
