"""A task that waited on the bus past its bound is not sent to its provider. A real nats-server, the
executor as its own process, a fake OpenAI upstream counting its requests; the test plays the router.
Two tasks are published while no executor runs (a backlog, an executor restarting): one whose client
waits 1 s, one that waits a minute. The executor that starts 2 s later runs the second, and ends the first
`task_expired` without a call: the fake never hears of it, no call is recorded, nothing is charged, and its
failure is on the stream, where the ledger and billing read it. Before, its budget started with the
executor and the provider was called (and paid) for an answer whose client had its timeout already."""

from __future__ import annotations

import asyncio
import re

import nats
import pytest
from nats.aio.msg import Msg

from switchyard.common import ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import ProviderCallRecorded, TaskCompleted, TaskFailed
from tests.integration.executor.conftest import Upstream
from tests.integration.executor.test_cancellations_replayed import client, executor, route

pytestmark = pytest.mark.integration
__all__ = ["client"]  # the fixture, used by name


async def test_a_task_queued_past_its_bound_is_not_sent_to_the_provider(
    client: nats.NATS, upstream: Upstream
) -> None:
    late, waiting = ids.new_id(), ids.new_id()
    recorded: list[str] = []

    async def on_record(msg: Msg) -> None:
        _, record = decode(msg.data, (ProviderCallRecorded,))
        assert isinstance(record, ProviderCallRecorded)
        recorded.append(record.task_id)

    await client.subscribe(subjects.PROVIDER_CALL, cb=on_record)
    expiring = await route(client, late, "queued-past-its-bound", timeout_s=1.0, origin="http")
    answered = await route(client, waiting, "queued-within-its-bound", timeout_s=60.0, origin="http")
    await asyncio.sleep(2.0)  # on the stream, no executor to take them
    async with executor(upstream):
        failed = await asyncio.wait_for(expiring, 30)
        done = await asyncio.wait_for(answered, 30)
    assert isinstance(done, TaskCompleted), done
    assert isinstance(failed, TaskFailed), failed
    assert (failed.error_code, failed.attempts, failed.charged) == ("task_expired", 0, [])
    assert re.fullmatch(
        r"the task waited \d+\.\d s after its submission before this executor took it \(a queue, or an "
        r"executor that stopped running it\), past its bound of 1 s; "
        r"this executor did not send it to a model",
        failed.error_message,
    ), failed.error_message
    assert upstream.fake.scenarios.calls["queued-past-its-bound"] == 0
    assert upstream.fake.scenarios.calls["queued-within-its-bound"] == 1
    await client.flush()
    assert late not in recorded and waiting in recorded
    stored = await client.jetstream().get_last_msg(
        subjects.STREAM_EVENTS, subjects.result_subject("acme", late)
    )
    _, kept = decode(stored.data)
    assert isinstance(kept, TaskFailed) and kept.error_code == "task_expired"
