"""A task cut by its executor's stop (still running past the stop grace: a rolling restart) is redone by
the next executor, and what the cut run was billed for is not lost on the way. A real nats-server, each
executor its own process, a fake OpenAI upstream; the test plays the router."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, kv, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import ChargedCall, ProviderCallRecorded, TaskCompleted, TaskFailed, Usage
from switchyard.common.service import start, stop
from switchyard.common.streaming import decode_chunk
from switchyard.executor import tool_state
from switchyard.executor.app import create
from switchyard.executor.carried import CarriedCalls, carried_bucket
from switchyard.executor.config import ExecutorSettings
from switchyard.executor.providers.base import ProviderCall, Reply
from switchyard.executor.registry import ProviderSet
from tests.integration.executor.conftest import Upstream
from tests.integration.executor.test_cancellations_replayed import route
from tests.integration.executor.test_service import _wait_until_answering
from tests.support.procs import service_process

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[nats.NATS]:
    """The test's own connection (it plays the router), with the bus's streams made."""
    nc = await nats.connect(url)
    try:
        await bus.ensure_streams(nc.jetstream())
        yield nc
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def executor(url: str, env: dict[str, str], log: Path) -> AsyncIterator[None]:
    """An executor process; leaving the block stops it with SIGTERM (a rolling restart's stop)."""
    with service_process("switchyard.executor", env=env, log_path=log) as proc:
        await _wait_until_answering(url, proc, log)
        yield


async def test_a_task_cut_by_a_stop_is_redone_and_its_result_counts_the_cut_runs_calls(
    upstream: Upstream,
) -> None:
    """The first executor stops (1 s grace) 0.5 s into a 3 s call: the call is cut, recorded as billed
    (its prompt, estimated) and the task goes back to the stream; the next executor runs it again. Its
    result lists the cut call in `charged`, so the gateway's budgets, which settle from the result, count
    what billing charges; and both runs' call records are stored. Before: `charged` was empty (the cut
    call billed, never counted against the budget), and the second run's record had the first one's id,
    so the stream dropped it as a duplicate (missing from the ledger)."""
    url, fake = upstream.nats.url, upstream.fake
    env = {**upstream.env, "SWITCHYARD_STOP_GRACE_S": "1"}
    nc = await nats.connect(url)
    try:
        await bus.ensure_streams(nc.jetstream())
        task_id = ids.new_id()
        records: list[tuple[str, ProviderCallRecorded]] = []

        async def on_record(msg: Msg) -> None:
            event, payload = decode(msg.data, (ProviderCallRecorded,))
            assert isinstance(payload, ProviderCallRecorded)
            if payload.task_id == task_id:
                records.append((event.id, payload))

        await nc.subscribe(subjects.PROVIDER_CALL, cb=on_record)
        async with executor(url, env, upstream.tmp / "first.log"):
            result = await route(nc, task_id, "slow-3")
            while fake.scenarios.calls["slow-3"] < 1:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        assert not result.done()
        for _ in range(20):  # published before the process ended; maybe not read here yet
            if records:
                break
            await asyncio.sleep(0.1)
        assert [(r.outcome, r.billable) for _, r in records] == [("cancelled", True)]
        cut = records[0][1]
        assert cut.usage.prompt_tokens > 0 and cut.usage_estimated

        async with executor(url, env, upstream.tmp / "second.log"):
            done = await asyncio.wait_for(result, 30)
            await asyncio.sleep(0.3)  # the second run's record, published before its result
    finally:
        await nc.close()
    assert isinstance(done, TaskCompleted), done
    assert fake.scenarios.calls["slow-3"] == 2
    assert [(c.model, c.usage) for c in done.charged] == [("openai/slow-3", cut.usage)]
    assert [(r.outcome, r.billable) for _, r in records] == [("cancelled", True), ("ok", False)]
    assert len({event_id for event_id, _ in records}) == 2


async def test_a_stream_under_way_cut_by_a_stop_ends_there_and_is_not_redone(upstream: Upstream) -> None:
    """The executor stops (1 s grace) while a stream is flowing to its client (a word a second): the
    stream ends with an error chunk and the task fails `executor_stopping`, billing the cut call; the
    message is acked, so the next executor does not run the answer again from its first word (which its
    gateway cannot splice onto what it sent: a `stream_gap`) and pay the upstream for it twice. Before:
    no result, and the next executor streamed it again from chunk 0."""
    url, env, task_id = upstream.nats.url, {**upstream.env, "SWITCHYARD_STOP_GRACE_S": "1"}, ids.new_id()
    seqs: list[int] = []

    async def on_chunk(msg: Msg) -> None:
        seqs.append(decode_chunk(msg.data).seq)

    async with connected(url) as nc:
        await nc.subscribe(subjects.chunk_subject("acme", task_id), cb=on_chunk)
        async with executor(url, env, upstream.tmp / "streaming.log"):
            result = await route(nc, task_id, "drip-1", stream=True)
            while len(seqs) < 2:
                await asyncio.sleep(0.05)
        done = await asyncio.wait_for(result, 5)
        assert isinstance(done, TaskFailed) and done.error_code == "executor_stopping", done
        assert [c.model for c in done.charged] == ["openai/drip-1"]
        async with executor(url, env, upstream.tmp / "after.log"):
            await asyncio.sleep(1.0)
            consumer = subjects.EXECUTOR_CONSUMER
            info = await nc.jetstream().consumer_info(consumer.stream, consumer.durable)
    assert upstream.fake.scenarios.calls["drip-1"] == 1
    assert seqs == list(range(len(seqs)))  # one run's chunks, in order, never started again
    assert (info.num_ack_pending, info.num_pending) == (0, 0)


async def test_what_a_cut_run_was_billed_for_is_kept_per_tenant(nats_server: NatsServer) -> None:
    """Kept by tenant and task: another tenant's task of the same id (a task published by another system
    names its own id) finds nothing; an id no KV key could hold is kept all the same; an unreadable entry
    is taken as none (logged), never an error for the task."""
    nc = await nats.connect(nats_server.url)
    try:
        carried = CarriedCalls(await carried_bucket(nc.jetstream()))
        calls = [ChargedCall(model="openai/gpt-x", usage=Usage(prompt_tokens=12, completion_tokens=3))]
        await carried.keep("acme", "order 7 * >", calls)
        assert await carried.take("acme", "order 7 * >") == calls
        assert await carried.take("globex", "order 7 * >") == []
        assert await carried.take("acme", "never-cut") == []
        bucket = await nc.jetstream().key_value(subjects.KV_CARRIED)
        await bucket.put(kv.tenant_key("acme", "garbled"), b"{not json")
        assert await carried.take("acme", "garbled") == []
    finally:
        await nc.close()


class _Answers:
    """A provider that answers at once."""

    async def request(self, call: ProviderCall) -> Reply:
        return Reply(
            content="Paris",
            finish_reason="stop",
            model=call.model,
            usage=Usage(prompt_tokens=5, completion_tokens=1),
        )


async def test_a_stop_after_the_calls_ended_delivers_the_answer_instead_of_redoing_it(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor's stop (0.1 s grace here) cuts a task whose provider call has ended while its answer is
    being settled (held up 1 s here, as a slow KV write of the tool state can): the answer exists and was
    paid for, so the run finishes and its result is published and acked, rather than the message going
    back to be redone (paid again) with nobody billing the first answer. Before, the cut ended the run
    there: no result, the message unacked."""
    keeping = asyncio.Event()

    async def slow_keep(*_: object, **__: object) -> None:
        keeping.set()
        await asyncio.sleep(1.0)

    monkeypatch.setattr(tool_state, "keep", slow_keep)
    settings = ExecutorSettings(nats_url=nats_server.url, local_enabled=False, shared_state=False)
    found = ProviderSet()
    found.add("openai", _Answers(), "test")
    service = create(settings, providers=found)
    nc = await nats.connect(nats_server.url)
    try:
        await start(service, settings)
        result = await route(nc, ids.new_id(), "gpt-fake")
        await asyncio.wait_for(keeping.wait(), 10)
        await stop(service, grace_s=0.1)
        done = await asyncio.wait_for(result, 5)
        assert isinstance(done, TaskCompleted) and done.content == "Paris", done
        consumer = subjects.EXECUTOR_CONSUMER
        info = await nc.jetstream().consumer_info(consumer.stream, consumer.durable)
        assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
    finally:
        await nc.close()
