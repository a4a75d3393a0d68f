"""A task's time bound holds from its submission, not from when an executor takes it: time it waited on the
bus (a backlog, a redelivery) is spent of it, and a task whose bound passed before it started is not sent
to a provider (`task_expired`, nothing billed, no call recorded). The arithmetic (budget.py) with fixed
times; then the executor's handling of such tasks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from switchyard.common.events import ChargedCall, TaskCompleted, TaskFailed, TaskRouted, Usage
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.testing import ScriptedProvider, reply
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerState, LocalBreakers
from switchyard.executor.resilience.budget import Budget, budget
from tests.unit.executor.test_execution import Bus, routed, run
from tests.unit.executor.test_resilience import Clock
from tests.unit.executor.test_task_timeouts import TIGHT, Thinker

pytestmark = pytest.mark.unit
SUBMITTED = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def after(
    waited_s: float,
    *,
    asked_s: float | None = None,
    deadline_s: float | None = None,
    from_submission: bool = True,
) -> Budget:
    """The budget of a task taken `waited_s` after its submission (the executor's own: 110 s)."""
    return budget(
        own_s=110.0,
        asked_s=asked_s,
        stream_max_s=3600.0,
        deadline=None if deadline_s is None else SUBMITTED + timedelta(seconds=deadline_s),
        submitted_at=SUBMITTED,
        counts_from_submission=from_submission,
        now=SUBMITTED + timedelta(seconds=waited_s),
    )


def test_time_queued_is_spent_of_the_bound() -> None:
    assert (after(30, asked_s=590).left_s, after(30, asked_s=590).bound_s) == (560, 590)
    assert after(30).left_s == 80  # no timeout_s: the executor's own budget, from the submission too


def test_a_bound_passed_before_the_start_is_expired() -> None:
    spent = after(600, asked_s=590)
    assert spent.expired and spent.left_s == 0
    assert spent.why_expired() == (
        "the task waited 600.0 s after its submission before this executor took it (a queue, or an executor "
        "that stopped running it), past its bound of 590 s; this executor did not send it to a model"
    )
    assert after(111).expired and not after(109).expired
    # the gateway's bound less its own time: said as a person reads it
    assert "past its bound of 9 s;" in after(9.5, asked_s=8.99858).why_expired()


def test_a_clock_behind_the_submitters_never_gives_more_than_the_whole_bound() -> None:
    early = after(-5, asked_s=50)
    assert (early.left_s, early.waited_s) == (50, 0)


def test_a_task_at_the_edge_gets_a_small_floor_against_a_second_of_skew() -> None:
    assert after(109.8).left_s == 1.0  # a tenth of its bound, at most a second
    assert after(0.49, asked_s=0.5).left_s == pytest.approx(0.05)
    assert after(110.0).expired  # nothing left: no floor


def test_a_task_that_may_queue_counts_its_run_from_its_start_and_only_its_deadline_from_submission() -> None:
    assert after(700, asked_s=600, from_submission=False).left_s == 600
    within = after(3500, asked_s=600, deadline_s=3600, from_submission=False)
    assert (within.left_s, within.bound_s) == (100, 600)
    assert after(3700, asked_s=600, deadline_s=3600, from_submission=False).expired


def test_tightened_is_the_submitters_choice_not_the_time_queued() -> None:
    assert not after(100, asked_s=110).tightened
    assert not after(100).tightened
    assert after(0, asked_s=50).tightened
    assert after(0, deadline_s=50).tightened


def test_a_streams_cap_keeps_to_the_deadline_from_the_submission() -> None:
    assert after(100, asked_s=600, deadline_s=600).cap_s == 500
    assert after(100, asked_s=600).cap_s == 3600


def sent(task: TaskRouted, *, ago_s: float, **fields: object) -> TaskRouted:
    """`task` as submitted `ago_s` seconds ago, with these fields."""
    submitted = datetime.now(UTC) - timedelta(seconds=ago_s)
    changed = task.task.model_copy(update={"submitted_at": submitted, **fields})
    return task.model_copy(update={"task": changed})


@pytest.mark.parametrize("stream", [False, True])
async def test_a_task_that_waited_past_its_bound_is_not_sent_to_a_provider(stream: bool) -> None:
    """Before, its budget started when the executor took it: the provider was called (and paid) for an
    answer whose client had its timeout already."""
    thinker, bus = Thinker(0.0), Bus()
    task = sent(routed("deep", stream=stream), ago_s=2.0, timeout_s=0.5, origin="http")
    outcome = await run(task, {"deep": thinker}, bus, policy=TIGHT)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_expired", outcome
    assert outcome.error_message.startswith("the task waited 2.0 s after its submission"), outcome
    assert (outcome.attempts, outcome.charged) == (0, [])
    assert thinker.calls == [] and bus.calls == [] and bus.chunks == []


async def test_a_task_from_the_gateway_without_a_bound_spends_the_executors_own_budget_queued() -> None:
    thinker = Thinker(0.0)
    outcome = await run(
        sent(routed("deep"), ago_s=1.0, origin="http"), {"deep": thinker}, Bus(), policy=TIGHT
    )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_expired", outcome
    assert thinker.calls == []


@pytest.mark.parametrize(
    "fields", [{"origin": "bus"}, {"origin": "http", "timeout_s": 0.5, "timeout_from": "started"}]
)
async def test_a_task_that_may_queue_runs_however_long_it_waited(fields: dict[str, object]) -> None:
    """A bus task without timeout_s, or one nobody waits for on a connection (the task API, a batch line)."""
    outcome = await run(
        sent(routed("deep"), ago_s=5.0, **fields), {"deep": Thinker(0.0)}, Bus(), policy=TIGHT
    )
    assert isinstance(outcome, TaskCompleted), outcome


async def test_a_call_gets_what_the_queue_left_of_its_tasks_bound() -> None:
    thinker = Thinker(0.0)
    task = sent(routed("deep"), ago_s=1.5, timeout_s=2.0, origin="http")
    outcome = await run(task, {"deep": thinker}, Bus(), policy=TIGHT)
    assert isinstance(outcome, TaskCompleted), outcome
    assert thinker.calls[0].timeout_s is not None and thinker.calls[0].timeout_s <= 0.5


async def test_an_expired_redelivery_still_hands_on_what_its_cut_run_was_billed_for() -> None:
    cut = ChargedCall(model="deep/model-deep", usage=Usage(prompt_tokens=12))
    task = sent(routed("deep"), ago_s=2.0, timeout_s=0.5, origin="http")
    outcome = await execute(
        task,
        providers={"deep": ScriptedProvider(reply("late"))},
        breakers=LocalBreakers(),
        policy=TIGHT,
        report=Bus().report,
        carried=[cut],
    )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_expired"
    assert outcome.charged == [cut]


async def test_a_half_open_breakers_probe_gets_a_calls_own_time_not_a_long_tasks() -> None:
    """A task whose client waits 30 s may give one call all of it (a long answer); but the call that
    probes a breaker after its cool-down is held to the per-call limit (0.2 s here): a provider that still
    hangs opens its breaker again and the task moves to its next model at once. Before, the probe waited
    the whole 30 s on the hung provider."""
    clock = Clock()
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1, open_s=10.0), clock=clock)
    await breakers.record_failure("deep/model-deep")
    clock.now += 10.0  # cool-down over: the next call is the probe
    hung, quick = Thinker(5.0), Thinker(0.0)
    task = sent(routed("deep", "quick"), ago_s=0.0, timeout_s=30.0, origin="http")
    policy = ExecutionPolicy(retry=TIGHT.retry, call_timeout_s=0.2, task_deadline_s=0.3)
    async with asyncio.timeout(3):
        outcome = await run(task, {"deep": hung, "quick": quick}, Bus(), breakers=breakers, policy=policy)
    assert isinstance(outcome, TaskCompleted) and outcome.model == "quick/model-quick", outcome
    assert hung.calls[0].timeout_s == pytest.approx(0.2)
    assert await breakers.state("deep/model-deep") is BreakerState.OPEN
    # a closed breaker's call keeps the long task's time
    assert quick.calls[0].timeout_s is not None and quick.calls[0].timeout_s > 25
