"""Events stranded at a consumer's last delivery, on a real nats-server with `switchyard up`'s permissions:
a consumer takes a task twice and never settles it (as a process killed on it each time would), the server
gives up and says so, and the executors' `stranded` consumer, as the executor's user, dead-letters the
event for the service that consumed it and answers the task's submitter. Before, the task waited unacked
for nobody: no dead letter, and a submitter on the bus never heard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from switchyard.common import bus, dlq, subjects
from switchyard.common.consumer import PullConsumer
from switchyard.common.envelope import decode
from switchyard.common.events import TaskFailed, TaskSubmitted
from switchyard.executor import stranded
from tests.support import event_ids
from tests.support.guarded_bus import GuardedBus, guarded_bus
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    monkeypatch.setenv("SWITCHYARD_BUS_PROVISIONED", "true")  # as `switchyard up` runs its services
    yield from guarded_bus(tmp_path)


async def _until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@dataclass
class Sweep:
    """The operator's client (it publishes and strands events like any system), the executor's, and the
    `stranded` consumer as the executor runs it, started by `start`."""

    operator: Client
    executor: Client
    sweeper: PullConsumer

    @property
    def ojs(self) -> JetStreamContext:
        return self.operator.jetstream()

    async def start(self) -> None:
        await self.sweeper.start(self.executor.jetstream())


@asynccontextmanager
async def _sweep(guarded: GuardedBus, errors: list[str] | None = None) -> AsyncIterator[Sweep]:
    """`errors`: what the server said to the executor's client."""
    operator = await nats.connect(guarded.operator_url)
    executor = await guarded.connect("executor", errors)
    js = executor.jetstream()
    sweeper = stranded.consumer(js, bus.EventPublisher(js, source="executor", id_key=event_ids.KEY))
    try:
        yield Sweep(operator, executor, sweeper)
    finally:
        await sweeper.stop()
        await executor.close()
        await operator.close()


async def _dead_lettered(js: JetStreamContext, service: str = "classifier") -> None:
    """Until `service` has a dead letter."""

    async def any_letter() -> bool:
        return bool([x async for x in dlq.scan(js, service=service)])

    await _until(any_letter)


def _failed(task: TaskSubmitted, *, error_code: str, error_message: str) -> TaskFailed:
    """An answer of `task` (acme's) stored on its result subject."""
    return TaskFailed(
        task_id=task.task_id,
        tenant_id="acme",
        error_code=error_code,
        error_message=error_message,
        failed_at=task.submitted_at,
    )


async def _swept(js: Any) -> None:
    """Until the sweep has taken the stranded advisories and settled every one it took."""

    async def swept() -> bool:
        info = await js.consumer_info(subjects.STREAM_STRANDED, subjects.STRANDED_CONSUMER.durable)
        return bool(info.delivered.stream_seq >= 1 and info.num_ack_pending == 0)

    await _until(swept)


async def _strand(js: Any, durable: str, subject: str) -> None:
    """`durable` takes the one event on `subject` twice (its limit) and never settles it."""
    sub = await js.pull_subscribe(
        subject,
        durable=durable,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0, max_deliver=2),
    )
    for _ in range(2):
        [msg] = await sub.fetch(1, timeout=10)
        assert msg.metadata.num_delivered in (1, 2)
    # still asking, as a running consumer does: the server finds the event due again, at its limit
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=2.5)
    await sub.unsubscribe()


async def test_a_task_stranded_at_the_classifier_is_dead_lettered_and_its_submitter_answered(
    guarded: GuardedBus,
) -> None:
    errors: list[str] = []
    async with _sweep(guarded, errors) as sweep:
        task = hello_task("t-stranded")
        answers = await sweep.operator.subscribe(subjects.result_subject(task.tenant_id, task.task_id))
        publisher = bus.EventPublisher(sweep.ojs, source="other-system")
        event_id = await publisher.publish(task, tenant_id=task.tenant_id)
        await _strand(sweep.ojs, subjects.CLASSIFIER_CONSUMER.durable, subjects.TASK_SUBMITTED)
        await sweep.start()

        letters: list[dlq.DeadLetter] = []

        async def dead_lettered() -> bool:
            letters[:] = [x async for x in dlq.scan(sweep.ojs, service="classifier")]
            return bool(letters)

        await _until(dead_lettered)
        [letter] = letters
        assert letter.code == "never_settled" and letter.consumer == "classifier"
        assert "delivered 2 times to `classifier` and never settled" in letter.reason
        assert letter.deliveries == 2 and letter.original_subject == subjects.TASK_SUBMITTED
        assert letter.event_id == event_id  # the event, byte for byte: `dlq replay` can send it again

        answer = await answers.next_msg(timeout=10)
        _, failed = decode(answer.data, (TaskFailed,))
        assert isinstance(failed, TaskFailed)
        assert (failed.task_id, failed.tenant_id, failed.error_code) == (
            "t-stranded",
            "acme",
            "never_settled",
        )
        assert errors == [] and guarded.violations() == []


async def test_a_stranded_task_that_has_its_result_already_is_not_answered_again(guarded: GuardedBus) -> None:
    async with _sweep(guarded) as sweep:
        task = hello_task("t-answered")
        ojs = sweep.ojs
        publisher = bus.EventPublisher(ojs, source="other-system")
        await publisher.publish(task, tenant_id=task.tenant_id)
        # its result came (a handler that hung past the ack wait, then finished), then the server gave up
        first = _failed(task, error_code="x", error_message="first")
        await publisher.publish(
            first, subject=subjects.result_subject(task.tenant_id, task.task_id), tenant_id="acme"
        )
        await _strand(ojs, subjects.CLASSIFIER_CONSUMER.durable, subjects.TASK_SUBMITTED)
        await sweep.start()

        await _dead_lettered(ojs)
        await asyncio.sleep(1.0)  # an answer would follow the dead letter at once
        results = await ojs.stream_info(
            subjects.STREAM_EVENTS, subjects_filter=subjects.result_subject(task.tenant_id, task.task_id)
        )
        assert results.state.subjects == {subjects.result_subject(task.tenant_id, task.task_id): 1}


async def test_an_advisory_of_a_consumer_not_switchyards_is_left_alone(guarded: GuardedBus) -> None:
    """An integrator makes its own durable consumer on its tenant's results, with the limits it likes (the
    request's body is its own): one it strands (`max_deliver` 2, never acked) is not ours to dead-letter.
    Before, each of its results was copied to the dead letters of a 'service' named after the consumer,
    counted and alerted on as Switchyard's (`never_settled`)."""
    async with _sweep(guarded) as sweep:
        ojs = sweep.ojs
        answer = _failed(hello_task("t-theirs"), error_code="x", error_message="m")
        publisher = bus.EventPublisher(ojs, source="executor")
        await publisher.publish(answer, subject=subjects.result_subject("acme", "t-theirs"), tenant_id="acme")
        theirs = subjects.results_consumer("integrator", "acme")
        await _strand(ojs, theirs.durable, theirs.filter_subject)
        await sweep.start()

        await _swept(ojs)
        assert [x async for x in dlq.scan(ojs)] == []


async def test_a_stranded_scoped_task_naming_another_tenant_is_not_answered_to_that_tenant(
    guarded: GuardedBus,
) -> None:
    """On acme's scoped subject, a task naming globex (a scoped system writing another tenant's id), stranded
    at `classifier-scoped`: dead-lettered, and globex hears nothing (its submitter was never globex)."""
    async with _sweep(guarded) as sweep:
        ojs = sweep.ojs
        task = hello_task("t-named", tenant_id="globex")
        victim = await sweep.operator.subscribe(subjects.result_subject("globex", task.task_id))
        publisher = bus.EventPublisher(ojs, source="other-system")
        await publisher.publish(task, subject=subjects.scoped(subjects.TASK_SUBMITTED, "acme"))
        scoped = subjects.CLASSIFIER_SCOPED_CONSUMER
        await _strand(ojs, scoped.durable, scoped.filter_subject)
        await sweep.start()

        await _dead_lettered(ojs)
        with pytest.raises(nats.errors.TimeoutError):
            await victim.next_msg(timeout=1.5)


async def test_a_forged_advisory_dead_letters_nothing_and_answers_no_task(guarded: GuardedBus) -> None:
    """An advisory no server gave: a user that may write a KV bucket (the router's routing statistics) puts
    an advisory's JSON there and has a direct get of it answered to the advisories' subject, which no
    permission checks and SWITCHYARD_STRANDED stores. The sweep refuses it by the server's marks on the
    stored answer (`Nats-Stream`...). Before, it dead-lettered the task it named and answered its submitter
    `never_settled`: any tenant's task failed by the router's user."""
    router = await guarded.connect("router")
    try:
        async with _sweep(guarded) as sweep:
            task = hello_task("t-victim", tenant_id="globex")
            answers = await sweep.operator.subscribe(subjects.result_subject("globex", task.task_id))
            ojs = sweep.ojs
            await bus.EventPublisher(ojs, source="gateway").publish(task, tenant_id="globex")
            seq = (await ojs.stream_info(subjects.STREAM_EVENTS)).state.last_seq
            forged = {
                "type": stranded.ADVISORY_TYPE,
                "stream": subjects.STREAM_EVENTS,
                "consumer": subjects.CLASSIFIER_CONSUMER.durable,
                "stream_seq": seq,
                "deliveries": 5,
            }
            stats = await router.jetstream().key_value(subjects.KV_ROUTING_STATS)
            await stats.put("bait", orjson.dumps(forged))
            own = f"KV_{subjects.KV_ROUTING_STATS}"
            advisory = subjects.STRANDED_ADVISORIES.replace("*", subjects.CLASSIFIER_CONSUMER.durable)
            await router.publish(
                f"$JS.API.DIRECT.GET.{own}.$KV.{subjects.KV_ROUTING_STATS}.bait", reply=advisory
            )
            await router.flush()
            await sweep.start()

            await _swept(ojs)
            assert [x async for x in dlq.scan(ojs)] == []
            with pytest.raises(nats.errors.TimeoutError):
                await answers.next_msg(timeout=1.0)
    finally:
        await router.close()


async def test_a_stranded_tasks_late_result_does_not_follow_its_failure(guarded: GuardedBus) -> None:
    """A classifier that hung past its last ack wait, then went on: the sweep answered the task
    `never_settled`, and the pipeline's result came after, under the id the pipeline derives for it from
    the submission's (classified, routed, result). The sweep's answer takes that id, so within the
    server's duplicate window the late result is dropped: the submitter heard a failure, and billing is
    given no completed task to charge for it. Before, both were stored: a second, contradicting answer,
    charged."""
    async with _sweep(guarded) as sweep:
        task = hello_task("t-late")
        ojs = sweep.ojs
        submitted = await bus.EventPublisher(ojs, source="gateway").publish(task, tenant_id=task.tenant_id)
        await _strand(ojs, subjects.CLASSIFIER_CONSUMER.durable, subjects.TASK_SUBMITTED)
        await sweep.start()
        result = subjects.result_subject(task.tenant_id, task.task_id)

        async def answered() -> bool:
            info = await ojs.stream_info(subjects.STREAM_EVENTS, subjects_filter=result)
            return bool(info.state.subjects)

        await _until(answered)
        late = _failed(task, error_code="y", error_message="late")
        # what the classifier, the router and the executor derive, given the deployment's secret
        classified = event_ids.derived(submitted, "classified", tenant_id="acme")
        routed = event_ids.derived(classified, "routed", tenant_id="acme")
        await bus.EventPublisher(sweep.executor.jetstream(), source="executor").publish(
            late,
            subject=result,
            event_id=event_ids.derived(routed, "result", tenant_id="acme"),
            tenant_id="acme",
        )
        info = await ojs.stream_info(subjects.STREAM_EVENTS, subjects_filter=result)
        assert info.state.subjects == {result: 1}
        stored = await ojs.get_last_msg(subjects.STREAM_EVENTS, result)
        _, failed = decode(stored.data or b"", (TaskFailed,))
        assert isinstance(failed, TaskFailed) and failed.error_code == "never_settled"


async def test_a_stranded_task_whose_result_subject_holds_no_result_is_answered(guarded: GuardedBus) -> None:
    """A publish's ack that a bus user had the server store on the task's result subject (NATS checks no
    reply subject) is no result: the stranded task is still answered never_settled, not left unheard."""
    async with _sweep(guarded) as sweep:
        operator, ojs = sweep.operator, sweep.ojs
        task = hello_task("t-planted")
        result_subject = subjects.result_subject(task.tenant_id, task.task_id)
        answers = await operator.subscribe(result_subject)
        await bus.EventPublisher(ojs, source="other-system").publish(task, tenant_id=task.tenant_id)
        await operator.publish(subjects.scoped(subjects.TASK_FEEDBACK, "acme"), b"{}", reply=result_subject)
        await operator.flush()
        planted = await answers.next_msg(timeout=5)  # the ack, stored there too
        assert b'"seq"' in planted.data
        await _strand(ojs, subjects.CLASSIFIER_CONSUMER.durable, subjects.TASK_SUBMITTED)
        await sweep.start()

        answer = await answers.next_msg(timeout=20)
        _, failed = decode(answer.data, (TaskFailed,))
        assert isinstance(failed, TaskFailed) and failed.error_code == "never_settled"
