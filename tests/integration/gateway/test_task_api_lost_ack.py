"""A keyed task API submission whose publishing the bus stored but whose ack never came (a stream leader
elected meanwhile, a node lost, the gateway's wait ending first), on a real nats-server: the task is in the
stream, so it runs and is charged; its client must learn its id, on the attempt itself or on a retry with
its `Idempotency-Key`, whatever a new task would be refused for by then.

The ack is lost for real: the gateway's publish waits (`publisher.PUBLISH_TIMEOUT_S`) far less than the
server takes to answer, so the message is stored and the wait has ended (nats-py's TimeoutError, as when
the answer is lost in an election).

The attempt itself asks the stream with one last publish under the task's event id (`Nats-Msg-Id`),
waited for in full: a duplicate ack says the stream has it (202). When that ack is lost too, the attempt
answers 503 but keeps its admission, and its claim says uncertain (with the event id): a retry with the
same body within the duplicate window publishes the task again under that id, with no admission of its
own (stored once either way), and answers 202 with it. Past the window a retry is a new submission, after
the result look-up (the last tests). Before (2026-12-07): the attempt 503, its admission given back, and a
retry a new submission (429 while the task ran and was charged): docs/reliability.md, the findings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, publisher, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskBudget, TaskSubmitted
from switchyard.gateway.admission import Pass
from switchyard.gateway.errors import RateLimited
from switchyard.gateway.taskapi import idempotency, keyed
from switchyard.gateway.taskapi.idempotency import BodyDigest
from switchyard.gateway.taskapi.models import Claim
from switchyard.gateway.taskapi.service import TaskRuns
from switchyard.gateway.taskapi.store import TaskStore, tasks_bucket
from switchyard.gateway.tasks import TaskClient
from tests.integration.gateway.test_admission import POLICY
from tests.support.tasks import completed, hello_task

pytestmark = pytest.mark.integration

LOST = 1e-6  # a wait no ack can meet: the message goes out and is stored, the wait has ended


@pytest.fixture
async def two(nats_server: NatsServer) -> AsyncIterator[tuple[TaskRuns, TaskRuns, list[str], Client]]:
    """Two replicas' task runs on one bus, the ids of the tasks the stream stored (in order), and a
    connection of the test's own."""
    conns: list[Client] = []
    runs = []
    for name in ("g1", "g2"):
        nc = await nats.connect(nats_server.url)
        conns.append(nc)
        js = nc.jetstream()
        await bus.ensure_streams(js)
        events = bus.EventPublisher(js, source=f"test/{name}", checks_duplicates=True)
        store = TaskStore(await tasks_bucket(js), js)
        runs.append(TaskRuns(store, TaskClient(nc, events), events, timeout_s=30))
    stored: list[str] = []

    async def heard(msg: Msg) -> None:
        task = decode(msg.data, (TaskSubmitted,))[1]
        assert isinstance(task, TaskSubmitted)
        stored.append(task.task_id)

    mine = await nats.connect(nats_server.url)
    sub = await mine.jetstream().subscribe(subjects.TASK_SUBMITTED, cb=heard, ordered_consumer=True)
    yield runs[0], runs[1], stored, mine
    await sub.unsubscribe()
    for r in runs:
        await r.stop()
    for nc in [*conns, mine]:
        await nc.close()


def _task(key: str) -> tuple[TaskSubmitted, str]:
    task_id = idempotency.task_ids("acme", key, datetime.now(UTC))[0]
    return hello_task(task_id), task_id


async def _admit(task: TaskSubmitted) -> Pass:
    return Pass(POLICY)


async def _until(check: object, within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    while not check():  # type: ignore[operator]
        assert loop.time() < until, "not within the wait"
        await asyncio.sleep(0.05)


async def test_a_task_stored_though_its_ack_was_lost_is_answered_by_its_own_attempt(
    two: tuple[TaskRuns, TaskRuns, list[str], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every publish attempt's ack is lost: the task is stored all the same, and the request that
    published it answers 202 with it (its last publish under the task's id, waited for in full, says
    duplicate). Before: 503 `bus_unavailable`, the task running unheard of."""
    one, _, stored, _ = two
    monkeypatch.setattr(publisher, "PUBLISH_ATTEMPTS", 2)
    monkeypatch.setattr(publisher, "PUBLISH_TIMEOUT_S", LOST)
    task, task_id = _task("lost-ack-1")
    state = await keyed.submit(one, task, key="lost-ack-1", digest=BodyDigest("d"), admit=_admit)
    assert state.id == task_id and state.status == "queued"
    await _until(lambda: stored == [task_id])
    assert (await one.store.get(task_id)) is not None


async def test_a_retry_its_admission_refuses_still_gets_the_task_a_lost_ack_left_running(
    two: tuple[TaskRuns, TaskRuns, list[str], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt's every ack is lost, its last publish's too (503 `bus_unavailable`), though the
    task is in the stream and runs: its admission stands, its claim says uncertain. A new task would be
    refused now (here: 429, the organisation's limit): the retry is answered with the running task, 202,
    with no admission of its own, and the task is in the stream once. Before: the first admission given
    back, the retry 429 for as long as the limit held, the task run and charged, its id never told."""
    one, other, stored, nc = two
    monkeypatch.setattr(publisher, "PUBLISH_ATTEMPTS", 1)
    monkeypatch.setattr(publisher, "PUBLISH_TIMEOUT_S", LOST)
    monkeypatch.setattr(publisher, "CONFIRM_TIMEOUT_S", LOST)
    task, task_id = _task("lost-ack-2")
    passes: list[Pass] = []

    async def admit_once(t: TaskSubmitted) -> Pass:
        if passes:
            raise RateLimited("the organisation's requests per minute are used up", retry=True)
        passes.append(Pass(POLICY))
        return passes[-1]

    with pytest.raises(nats.errors.TimeoutError):
        await keyed.submit(one, task, key="lost-ack-2", digest=BodyDigest("d"), admit=admit_once)
    await _until(lambda: stored == [task_id])  # the bus has it: it runs, and will be charged
    assert [p.closed for p in passes] == [False], "the first admission stands, settled by the outcome"
    found = await one.store.claim(idempotency.claim_key("acme", "lost-ack-2"))
    assert found is not None and found[0].uncertain and not found[0].unsent
    assert found[0].event_id == one._client.submitted_id(task)
    monkeypatch.undo()
    retry, _ = _task("lost-ack-2")
    state = await keyed.submit(other, retry, key="lost-ack-2", digest=BodyDigest("d"), admit=admit_once)
    assert state.id == task_id and state.status == "queued"
    again = await keyed.replay(
        one,
        claim_key=idempotency.claim_key("acme", "lost-ack-2"),
        digest=BodyDigest("d"),
        kept=[task_id],
    )
    assert again is not None and again.id == task_id
    await asyncio.sleep(0.3)
    assert stored == [task_id], "stored once: the retry's publishing (if any) was a duplicate"
    assert len(passes) == 1 and not passes[0].closed, "no second admission; the first one still held"
    executor = bus.EventPublisher(nc.jetstream(), source="test/executor")
    await executor.publish(
        completed(task_id), subject=subjects.result_subject("acme", task_id), tenant_id="acme"
    )
    await _until(lambda: passes[0].closed)  # settled by the task's outcome, on the replica that took it
    assert passes[0].outcome is not None and passes[0].outcome.task_id == task_id


async def test_a_retry_whose_task_never_reached_the_bus_is_still_refused_by_its_admission(
    two: tuple[TaskRuns, TaskRuns, list[str], Client],
) -> None:
    """The other side: a claim whose task is not in the stream (its publishing failed before the bus had
    it) is taken over as a new submission, so a refusal stands and nothing is published."""
    one, other, stored, nc = two
    task, task_id = _task("never-sent-1")
    claim_key = idempotency.claim_key("acme", "never-sent-1")
    left = Claim(task_id=task_id, request_sha256="d", claimed_at=datetime.now(UTC), unsent=True)
    assert await one.store.take(claim_key, left) is not None

    async def refuse(t: TaskSubmitted) -> Pass:
        raise RateLimited("the organisation's requests per minute are used up", retry=True)

    with pytest.raises(RateLimited):
        await keyed.submit(other, task, key="never-sent-1", digest=BodyDigest("d"), admit=refuse)
    await asyncio.sleep(0.3)
    assert stored == []
    info = await nc.jetstream().stream_info(subjects.STREAM_EVENTS)
    assert info.state.messages == 0, "the question asked of the bus stored nothing"


async def test_a_retry_refused_as_new_gets_the_finished_task_a_lost_ack_left(
    two: tuple[TaskRuns, TaskRuns, list[str], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, and the task has run meanwhile (its result is on the stream, as an executor stores it):
    a retry refused as a new task (here its admission, 429) is answered with the finished task, 202
    with its result, and so is the next one; not the refusal. The result is there to look for whatever
    refuses (a check before admission too), and looking for it stores nothing on the bus. (Before: 429,
    the task answered and charged, its client never told its id.)"""
    one, other, stored, nc = two
    monkeypatch.setattr(publisher, "PUBLISH_ATTEMPTS", 1)
    monkeypatch.setattr(publisher, "PUBLISH_TIMEOUT_S", LOST)
    monkeypatch.setattr(publisher, "CONFIRM_TIMEOUT_S", LOST)
    task, task_id = _task("lost-ack-3")
    passes: list[Pass] = []

    async def admit_once(t: TaskSubmitted) -> Pass:
        if passes:
            raise RateLimited("the organisation's requests per minute are used up", retry=True)
        passes.append(Pass(POLICY))
        return passes[-1]

    with pytest.raises(nats.errors.TimeoutError):
        await keyed.submit(one, task, key="lost-ack-3", digest=BodyDigest("d"), admit=admit_once)
    await _until(lambda: stored == [task_id])
    monkeypatch.undo()
    executor = bus.EventPublisher(nc.jetstream(), source="test/executor")
    await executor.publish(
        completed(task_id, content="7 is prime"),
        subject=subjects.result_subject("acme", task_id),
        tenant_id="acme",
    )
    claim_key = idempotency.claim_key("acme", "lost-ack-3")
    # the look-up a retry makes before any check that could refuse it (`serving.submit_parsed`)
    found = await keyed.replay(
        other, claim_key=claim_key, digest=BodyDigest("d"), kept=[task_id], tenant_id="acme", key="lost-ack-3"
    )
    assert found is not None and found.id == task_id and found.status == "completed", found
    assert found.result is not None and found.result.content == "7 is prime"
    bucket = await tasks_bucket(nc.jetstream())
    await bucket.purge(task_id)  # as if that state was never stored: the admission's refusal path
    for runs in (other, one):
        retry, _ = _task("lost-ack-3")
        state = await keyed.submit(runs, retry, key="lost-ack-3", digest=BodyDigest("d"), admit=admit_once)
        assert state.id == task_id and state.status == "completed", state
        assert state.result is not None and state.result.content == "7 is prime"
    assert stored == [task_id], "the task once on the bus"


async def _refuse(t: TaskSubmitted) -> Pass:
    raise RateLimited("the organisation's requests per minute are used up", retry=True)


async def test_a_retry_publishes_an_uncertain_task_the_bus_does_not_have_under_its_id(
    two: tuple[TaskRuns, TaskRuns, list[str], Client],
) -> None:
    """An uncertain claim (its publishing's ack lost) within the duplicate window whose task the stream
    does not have (the publish never arrived): the retry's publish under the claim's id is stored (a fresh
    ack), with the first request's hard-budget caps and no admission of its own; 202, the task in the
    stream once, and a second retry stores nothing more."""
    one, other, stored, nc = two
    task, task_id = _task("uncertain-1")
    claim_key = idempotency.claim_key("acme", "uncertain-1")
    caps = TaskBudget(max_output_tokens=64, calls=1)
    left = Claim(
        task_id=task_id,
        request_sha256="d",
        claimed_at=datetime.now(UTC),
        uncertain=True,
        event_id=one._client.submitted_id(task),
        budget=caps,
    )
    assert await one.store.take(claim_key, left) is not None
    for runs in (other, one):
        retry, _ = _task("uncertain-1")
        state = await keyed.submit(runs, retry, key="uncertain-1", digest=BodyDigest("d"), admit=_refuse)
        assert state.id == task_id and state.status == "queued", state
    await _until(lambda: stored == [task_id])
    await asyncio.sleep(0.3)
    assert stored == [task_id], "stored once"
    msg = await nc.jetstream().get_last_msg(subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED)
    sent = decode(msg.data or b"", (TaskSubmitted,))[1]
    assert isinstance(sent, TaskSubmitted) and sent.budget == caps
    assert (msg.headers or {}).get("Nats-Msg-Id") == left.event_id


async def test_a_retry_past_the_duplicate_window_is_a_new_submission(
    two: tuple[TaskRuns, TaskRuns, list[str], Client],
) -> None:
    """Past the duplicate window a publish under the claim's id could store a second copy: the retry is
    taken as a new submission (after the result look-up), so a refusal stands and nothing is published."""
    one, other, stored, nc = two
    task, task_id = _task("uncertain-2")
    claim_key = idempotency.claim_key("acme", "uncertain-2")
    then = datetime.now(UTC) - timedelta(seconds=keyed.RESEND_WITHIN_S + 1)
    left = Claim(task_id=task_id, request_sha256="d", claimed_at=then, uncertain=True)
    assert await one.store.take(claim_key, left) is not None
    with pytest.raises(RateLimited):
        await keyed.submit(other, task, key="uncertain-2", digest=BodyDigest("d"), admit=_refuse)
    await asyncio.sleep(0.3)
    assert stored == []
    info = await nc.jetstream().stream_info(subjects.STREAM_EVENTS)
    assert info.state.messages == 0
