"""Cancelled tasks: what the executor remembers of cancellations, and `execute` stopped by one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from switchyard.common import subjects
from switchyard.common.envelope import encode
from switchyard.common.events import (
    ChargedCall,
    ProviderCallRecorded,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskFeedback,
    TaskTimedOut,
)
from switchyard.executor.cancellations import Cancellations
from switchyard.executor.providers.base import Provider, ProviderCall, Reply, TextDelta
from switchyard.executor.providers.testing import ScriptedProvider, reply
from switchyard.executor.resilience.breaker import LocalBreakers
from tests.unit.executor.test_execution import Bus, routed
from tests.unit.executor.test_execution import run as run_task
from tests.unit.executor.test_limits import Clock

pytestmark = pytest.mark.unit


def test_a_cancellation_counts_for_its_tenant_and_is_forgotten_after_a_while() -> None:
    clock = Clock()
    cancellations = Cancellations(remember_s=60, clock=clock)
    assert cancellations.cancel("acme", "t1") is False  # not running here: remembered
    assert cancellations.asked("acme", "t1") and not cancellations.asked("other", "t1")
    clock.now += 61
    assert not cancellations.asked("acme", "t1")


def test_a_replayed_cancellation_is_remembered_from_when_it_was_made() -> None:
    """A replica that starts replays the last cancellations: each counts from its own time, so a replay
    does not make an old one new."""
    clock = Clock()
    cancellations = Cancellations(remember_s=60, clock=clock)
    assert cancellations.cancel("acme", "t1", age_s=50) is False
    assert cancellations.asked("acme", "t1")
    clock.now += 11
    assert not cancellations.asked("acme", "t1")
    cancellations.cancel("acme", "t2", age_s=61)  # older than the window: forgotten already
    assert not cancellations.asked("acme", "t2")


async def test_a_scoped_cancellation_counts_only_for_its_subjects_tenant() -> None:
    """A system scoped to globex publishes on `task.cancelled.<globex's token>`: one naming acme's task
    there is refused (`tenant_mismatch`), and acme's task is not cancelled; one naming globex's is."""
    cancellations = Cancellations(remember_s=600)
    now = datetime.now(UTC)
    for tenant in ("acme", "globex"):
        event = TaskCancelled(task_id="t1", tenant_id=tenant, cancelled_at=now)
        raw = encode(event, source="test", tenant_id=tenant)[1]
        await cancellations.on_message(raw, subject=subjects.scoped(subjects.TASK_CANCELLED, "globex"))
    assert not cancellations.asked("acme", "t1")
    assert cancellations.asked("globex", "t1")


async def test_an_event_is_as_old_as_the_time_it_carries() -> None:
    cancellations = Cancellations(remember_s=600)
    long_ago, lately = datetime.now(UTC) - timedelta(minutes=11), datetime.now(UTC) - timedelta(minutes=9)
    for task_id, at in (("old", long_ago), ("recent", lately)):
        event = TaskCancelled(task_id=task_id, tenant_id="acme", cancelled_at=at)
        await cancellations.on_message(encode(event, source="test", tenant_id="acme")[1])
    assert not cancellations.asked("acme", "old") and cancellations.asked("acme", "recent")
    # a timeout carries no time of its own: the envelope's, else when the stream stored it
    timed_out = TaskTimedOut(task_id="late", tenant_id="acme", waited_ms=120_000.0)
    envelope = orjson.loads(encode(timed_out, source="test", tenant_id="acme")[1])
    await cancellations.on_message(orjson.dumps({**envelope, "time": long_ago.isoformat()}))
    assert not cancellations.asked("acme", "late")
    del envelope["time"]
    await cancellations.on_message(orjson.dumps(envelope), stored_at=long_ago)
    assert not cancellations.asked("acme", "late")
    await cancellations.on_message(orjson.dumps(envelope), stored_at=lately)
    assert cancellations.asked("acme", "late")


def test_what_is_remembered_is_bounded() -> None:
    cancellations = Cancellations(most=3)
    for n in range(5):
        cancellations.cancel("acme", f"t{n}")
    assert [cancellations.asked("acme", f"t{n}") for n in range(5)] == [False, False, True, True, True]


async def test_a_running_task_is_cancelled_and_a_finished_one_is_not() -> None:
    cancellations = Cancellations()
    run = asyncio.create_task(asyncio.Event().wait())
    with cancellations.running("acme", "t1", run):
        assert cancellations.cancel("other", "t1") is False  # another tenant's cancellation: nothing
        assert cancellations.cancel("acme", "t1") is True
    with pytest.raises(asyncio.CancelledError):
        await run
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    with cancellations.running("acme", "t2", done):
        assert cancellations.cancel("acme", "t2") is False


async def test_only_valid_cancellation_events_count() -> None:
    cancellations = Cancellations()
    await cancellations.on_message(b"not json")
    event = TaskCancelled(
        task_id="t1", tenant_id="acme", cancelled_at=datetime.now(UTC), reason="disconnected"
    )
    _, raw = encode(event, source="test", tenant_id="acme")
    await cancellations.on_message(raw)
    assert cancellations.asked("acme", "t1")
    # a task the gateway stopped waiting for (a 504) is not run on for nobody
    _, raw = encode(
        TaskTimedOut(task_id="t2", tenant_id="acme", waited_ms=120_000.0), source="t", tenant_id="acme"
    )
    await cancellations.on_message(raw)
    assert cancellations.asked("acme", "t2") and not cancellations.asked("other", "t2")
    _, raw = encode(
        TaskFeedback(task_id="t3", tenant_id="acme", rating="bad", at=datetime.now(UTC)), source="t"
    )
    await cancellations.on_message(raw)  # any other event on the subject counts for nothing
    assert not cancellations.asked("acme", "t3")


class Hangs:
    """A provider that never answers (until its call is cut)."""

    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def request(self, call: ProviderCall) -> Reply:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def _running(asked: list[bool]) -> tuple[asyncio.Task[TaskCompleted | TaskFailed], Bus]:
    bus, upstream = Bus(), Hangs()
    run = asyncio.create_task(
        run_task(routed("openai"), {"openai": upstream}, bus, cancelled=lambda: asked[0])
    )
    await asyncio.wait_for(upstream.called.wait(), 5)
    return run, bus


async def test_execute_stopped_by_a_cancellation_ends_the_task_and_bills_the_cut_call() -> None:
    asked = [False]
    run, bus = await _running(asked)
    asked[0] = True
    run.cancel()
    outcome = await run
    assert isinstance(outcome, TaskFailed) and (outcome.error_code, outcome.attempts) == ("task_cancelled", 1)
    [(_, call)] = bus.calls
    assert (call.outcome, call.billable, call.usage_estimated) == ("cancelled", True, True)
    assert call.usage.prompt_tokens > 0
    # the failure says what it still cost, so the gateway's budget counter settles at billing's sum
    assert outcome.charged == [ChargedCall(model=call.model, usage=call.usage)]


async def test_any_other_cancellation_of_execute_goes_on_up() -> None:
    run, _ = await _running([False])  # a shutdown, say: nobody asked for this task to stop
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run


async def test_a_cancellation_lost_on_the_way_still_stops_the_call() -> None:
    """The cancellation arrives while the breaker reads KV, and the read returns anyway (what
    `asyncio.wait_for` in nats-py does on Python 3.11 when the reply comes in the same instant): the
    call is still not made, and the task ends cancelled."""
    asked = [False]

    class Breakers(LocalBreakers):
        async def allow(self, key: str) -> bool:
            asked[0] = True  # heard now; the interruption itself is lost
            return await super().allow(key)

    bus, upstream = Bus(), Hangs()
    async with asyncio.timeout(5):  # without the check, the call would hang here
        outcome = await run_task(
            routed("openai"), {"openai": upstream}, bus, breakers=Breakers(), cancelled=lambda: asked[0]
        )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_cancelled"
    assert not upstream.called.is_set() and bus.calls == []


class Drips:
    """A streaming provider that never ends by itself; remembers whether its stream was closed."""

    def __init__(self, gap_s: float = 0.0) -> None:
        self.sent, self.closed, self.gap_s = 0, False, gap_s

    async def request(self, call: ProviderCall) -> Reply:
        raise AssertionError("streamed")

    async def stream(self, call: ProviderCall) -> AsyncIterator[TextDelta | Reply]:
        try:
            while True:
                self.sent += 1
                yield TextDelta("word ")
                await asyncio.sleep(self.gap_s)
        finally:
            self.closed = True


async def test_a_stream_whose_interruption_was_lost_is_cut_between_its_parts() -> None:
    """The cancellation is heard while a stream runs, but nothing awaited is interrupted (as when a layer
    swallows it): the stream is cut at its next part, recorded cut and billed, and closed upstream."""
    bus, upstream = Bus(), Drips()

    def cancelled() -> bool:
        return upstream.sent >= 3  # heard after the third part; no interruption comes

    async with asyncio.timeout(5):  # without the check, the stream would never end
        outcome = await run_task(
            routed("openai", stream=True), {"openai": upstream}, bus, cancelled=cancelled
        )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_cancelled"
    [(_, call)] = bus.calls
    assert (call.outcome, call.billable, call.usage.completion_tokens > 0) == ("cancelled", True, True)
    assert upstream.closed and upstream.sent == 3
    assert outcome.charged == [ChargedCall(model=call.model, usage=call.usage)]


class SlowBooks(Bus):
    """Reports provider calls only when released: the moment between an answer and its record."""

    def __init__(self) -> None:
        super().__init__()
        self.reporting = asyncio.Event()
        self.release = asyncio.Event()

    async def report(self, attempt: int, record: ProviderCallRecorded) -> None:
        self.reporting.set()
        await self.release.wait()
        await super().report(attempt, record)


def _execute(
    upstream: Provider, bus: Bus, cancellations: Cancellations
) -> asyncio.Task[TaskCompleted | TaskFailed]:
    """`execute` wired as the executor's service wires it: interruptible only around its calls."""
    run: asyncio.Task[TaskCompleted | TaskFailed] = asyncio.create_task(
        run_task(
            routed("openai"),
            {"openai": upstream},
            bus,
            cancelled=lambda: cancellations.asked("acme", "t1"),
            interruptible=lambda: cancellations.running("acme", "t1", run),
        )
    )
    return run


async def test_a_cancellation_heard_after_the_calls_leaves_their_records_and_outcome_alone() -> None:
    """The client leaves once the answer is in, while its record is being reported: nothing is cut.
    When the whole execution could be cancelled, the report was interrupted and the cancellation escaped
    as a shutdown would: the task stayed unacked until redelivered (30 s), and the redelivery, finding
    it cancelled, never reported the answer the provider had already charged for."""
    cancellations, bus = Cancellations(), SlowBooks()
    run = _execute(ScriptedProvider(reply("Paris.")), bus, cancellations)
    await asyncio.wait_for(bus.reporting.wait(), 5)
    assert cancellations.cancel("acme", "t1") is False  # remembered, with nothing left to interrupt
    bus.release.set()
    outcome = await asyncio.wait_for(run, 5)
    assert isinstance(outcome, TaskCompleted) and outcome.content == "Paris."
    [(_, record)] = bus.calls
    assert record.outcome == "ok"


async def test_a_cancellation_heard_during_a_call_still_cuts_it() -> None:
    cancellations, bus, upstream = Cancellations(), Bus(), Hangs()
    run = _execute(upstream, bus, cancellations)
    await asyncio.wait_for(upstream.called.wait(), 5)
    assert cancellations.cancel("acme", "t1") is True
    outcome = await asyncio.wait_for(run, 5)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_cancelled"
    [(_, record)] = bus.calls
    assert (record.outcome, record.billable) == ("cancelled", True)


async def test_a_stop_cutting_a_stream_that_sent_output_ends_it_instead_of_redoing_it() -> None:
    """The executor's stop (past its grace: a rolling restart) cuts a stream its client is already reading:
    a redo would start the answer again from its first word, which the gateway cannot splice onto what it
    sent (a `stream_gap`), and pay the upstream again for an answer nobody reads. The stream ends with an
    error chunk and a failure (`executor_stopping`) that bills the cut call, so the message is acked.
    Before, the cut went on up (CancelledError): the task was redelivered and run again from the start."""
    bus, upstream = Bus(), Drips(gap_s=0.01)  # a part every 10 ms until it is closed
    run = asyncio.create_task(
        run_task(routed("openai", stream=True), {"openai": upstream}, bus, cancelled=lambda: False)
    )
    async with asyncio.timeout(5):
        while upstream.sent < 3:
            await asyncio.sleep(0.01)
    run.cancel()  # nobody asked for this task to stop: a shutdown
    outcome = await asyncio.wait_for(run, 5)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "executor_stopping", outcome
    assert bus.decoded()[-1]["error"]["code"] == "executor_stopping"
    [(_, call)] = bus.calls
    assert (call.outcome, call.billable) == ("cancelled", True)
    assert outcome.charged == [ChargedCall(model=call.model, usage=call.usage)]
    assert upstream.closed


async def test_a_stop_before_a_streams_first_output_still_hands_the_task_on() -> None:
    """Nothing was sent yet: the task goes back to the stream, to be run by another replica."""

    class Silent(Hangs):
        async def stream(self, call: ProviderCall) -> AsyncIterator[TextDelta | Reply]:
            self.called.set()
            await asyncio.Event().wait()
            yield TextDelta("unreachable")

    bus, upstream = Bus(), Silent()
    run = asyncio.create_task(
        run_task(routed("openai", stream=True), {"openai": upstream}, bus, cancelled=lambda: False)
    )
    await asyncio.wait_for(upstream.called.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
