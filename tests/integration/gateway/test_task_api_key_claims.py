"""An Idempotency-Key's claim (`taskapi.keyed`) on a real nats-server: two replicas whose requests straddle
the end of a seven-day period (the task id counts the period) make one task, not one each; a claim left by
a request whose publishing failed is taken over by the next request with its body, and refuses another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskSubmitted
from switchyard.gateway.admission import Pass
from switchyard.gateway.errors import Conflict
from switchyard.gateway.taskapi import idempotency, keyed
from switchyard.gateway.taskapi.idempotency import BodyDigest
from switchyard.gateway.taskapi.models import Claim
from switchyard.gateway.taskapi.service import TaskRuns
from switchyard.gateway.taskapi.store import KEEP_S, TaskStore, tasks_bucket
from switchyard.gateway.tasks import TaskClient
from tests.integration.gateway.test_admission import POLICY
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration


@pytest.fixture
async def two(nats_server: NatsServer) -> AsyncIterator[tuple[TaskRuns, TaskRuns, list[str]]]:
    """Two replicas' task runs on one bus, and the ids of the tasks published (in order)."""
    conns: list[Client] = []
    runs = []
    for name in ("g1", "g2"):
        nc = await nats.connect(nats_server.url)
        conns.append(nc)
        js = nc.jetstream()
        await bus.ensure_streams(js)
        publisher = bus.EventPublisher(js, source=f"test/{name}")
        store = TaskStore(await tasks_bucket(js), js)
        runs.append(TaskRuns(store, TaskClient(nc, publisher), publisher, timeout_s=30))
    published: list[str] = []

    async def heard(msg: Msg) -> None:
        task = decode(msg.data, (TaskSubmitted,))[1]
        assert isinstance(task, TaskSubmitted)
        published.append(task.task_id)

    await conns[0].subscribe(subjects.TASK_SUBMITTED, cb=heard)
    await conns[0].flush()
    yield runs[0], runs[1], published
    for r in runs:
        await r.stop()
    for nc in conns:
        await nc.close()


async def _admit(task: TaskSubmitted) -> Pass:
    return Pass(POLICY)


def _at(at: datetime, key: str) -> tuple[TaskSubmitted, list[str]]:
    """A task submitted `at` under `key`, with the ids its replica looks under (`idempotency.task_ids`)."""
    kept = idempotency.task_ids("acme", key, at)
    task = hello_task(kept[0]).model_copy(update={"submitted_at": at})
    return task, kept


async def test_retries_either_side_of_a_period_end_make_one_task(
    two: tuple[TaskRuns, TaskRuns, list[str]],
) -> None:
    one, other, published = two
    end = datetime.fromtimestamp((int(datetime.now(UTC).timestamp() // KEEP_S) + 1) * KEEP_S, UTC)
    before, kept_before = _at(end - timedelta(milliseconds=5), "boundary-1")
    after, kept_after = _at(end + timedelta(milliseconds=5), "boundary-1")
    assert kept_before[0] != kept_after[0], "the two requests' own ids differ"
    first, second = await asyncio.gather(
        keyed.submit(one, before, key="boundary-1", digest=BodyDigest("d"), admit=_admit),
        keyed.submit(other, after, key="boundary-1", digest=BodyDigest("d"), admit=_admit),
    )
    assert first.id == second.id
    await asyncio.sleep(0.2)
    assert published == [first.id], "one task published"


async def test_a_claim_whose_publishing_failed_is_taken_over_by_its_body_only(
    two: tuple[TaskRuns, TaskRuns, list[str]],
) -> None:
    one, other, published = two
    task, kept = _at(datetime.now(UTC), "unsent-1")
    claim_key = idempotency.claim_key("acme", "unsent-1")
    left = Claim(task_id=kept[0], request_sha256="d", claimed_at=datetime.now(UTC), unsent=True)
    assert await one.store.take(claim_key, left) is not None
    with pytest.raises(Conflict) as refused:
        await keyed.submit(other, task, key="unsent-1", digest=BodyDigest("e"), admit=_admit)
    assert refused.value.code == "idempotency_key_reused"
    state = await keyed.submit(other, task, key="unsent-1", digest=BodyDigest("d"), admit=_admit)
    assert state.id == kept[0] and state.status == "queued"
    again = await keyed.submit(one, task, key="unsent-1", digest=BodyDigest("d"), admit=_admit)
    assert again.id == state.id
    assert published == [state.id]


async def test_a_clients_key_that_reads_like_a_batch_lines_is_another_key(
    two: tuple[TaskRuns, TaskRuns, list[str]],
) -> None:
    """A batch line's task is claimed under its own id, not its key's text: a client sending the
    key `<batch id>:<line>` with another body neither blocks the line nor gets its task."""
    one, other, published = two
    client, _ = _at(datetime.now(UTC), "batch_abc:0")
    mine = await keyed.submit(one, client, key="batch_abc:0", digest=BodyDigest("client"), admit=_admit)
    line = hello_task("line-task-0")
    own = idempotency.claim_key("acme", "batch_abc:0", task_id="line-task-0")
    ran = await keyed.submit(
        other, line, key="batch_abc:0", digest=BodyDigest("line"), admit=_admit, claim_key=own
    )
    assert ran.id == "line-task-0" != mine.id
    assert published == [mine.id, "line-task-0"]


async def test_a_publishing_that_fails_gives_the_admission_back_and_frees_the_key(
    two: tuple[TaskRuns, TaskRuns, list[str]], nats_server: NatsServer
) -> None:
    """The events stream refuses the task (a real JetStream error: it takes no message over 1 byte): the
    submission fails, its admission is given back, and its claim says so, so the same body, sent again once
    the stream takes it, is submitted at once (not `idempotency_key_in_use` until the claim is stale)."""
    one, other, _ = two
    task, kept = _at(datetime.now(UTC), "no-stream-1")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(subjects.STREAM_EVENTS)).config
        config.max_msg_size = 1
        await js.update_stream(config)
        passes: list[Pass] = []

        async def admit(t: TaskSubmitted) -> Pass:
            passes.append(Pass(POLICY))
            return passes[-1]

        with pytest.raises(nats.errors.Error):
            await keyed.submit(one, task, key="no-stream-1", digest=BodyDigest("d"), admit=admit)
        assert [p.closed for p in passes] == [True]
        config.max_msg_size = -1
        await js.update_stream(config)
        state = await keyed.submit(other, task, key="no-stream-1", digest=BodyDigest("d"), admit=admit)
    finally:
        await nc.close()
    assert state.id == kept[0] and state.status == "queued"
    assert [p.closed for p in passes] == [True, False]


async def test_a_claim_left_by_a_request_that_went_away_is_taken_over_once_stale(
    two: tuple[TaskRuns, TaskRuns, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica killed between claiming a key and storing its task: a retry with the body waits for the
    task (STORED_WAIT_S), is told to retry while the claim is fresh, and takes the claim over once stale."""
    monkeypatch.setattr(keyed, "STORED_WAIT_S", 0.3)
    one, other, published = two
    task, kept = _at(datetime.now(UTC), "killed-1")
    claim_key = idempotency.claim_key("acme", "killed-1")
    fresh = Claim(task_id=kept[0], request_sha256="d", claimed_at=datetime.now(UTC))
    revision = await one.store.take(claim_key, fresh)
    assert revision is not None
    with pytest.raises(Conflict) as waiting:
        await keyed.submit(other, task, key="killed-1", digest=BodyDigest("d"), admit=_admit)
    assert waiting.value.code == "idempotency_key_in_use" and waiting.value.retry is True
    stale = fresh.model_copy(
        update={"claimed_at": datetime.now(UTC) - timedelta(seconds=keyed.CLAIM_STALE_S)}
    )
    await one.store.take(claim_key, stale, over=revision)
    state = await keyed.submit(other, task, key="killed-1", digest=BodyDigest("d"), admit=_admit)
    assert state.id == kept[0] and state.status == "queued"
    await asyncio.sleep(0.2)
    assert published == [state.id]
