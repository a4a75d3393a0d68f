"""A task whose submitter says how long it may run (`TaskSubmitted.timeout_s`, its client's own timeout)
gets that instead of the executor's deadline, and one call may take all of it: a reasoning model that
answers after the executor's per-call limit is waited for, as its client would wait calling it directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import Histogram

from switchyard.common.events import TaskCompleted, TaskFailed, TaskRouted
from switchyard.executor import metrics
from switchyard.executor.execution import ExecutionPolicy
from switchyard.executor.providers.base import ProviderCall, Reply, StreamPart, TextDelta
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.testing import reply
from switchyard.executor.resilience.retry import RetryPolicy
from switchyard.gateway import metrics as gateway_metrics
from switchyard.gateway.config import GatewaySettings
from tests.unit.executor.test_execution import Bus, routed, run

pytestmark = pytest.mark.unit
# One call may wait 0.2 s, a task 0.3 s in all: a provider that answers after 0.6 s is cut by default.
TIGHT = ExecutionPolicy(
    retry=RetryPolicy(max_retries=0, base_s=0.001, cap_s=0.002), call_timeout_s=0.2, task_deadline_s=0.3
)


class Thinker:
    """Answers after `delay` seconds, within each call's own `timeout_s` as the HTTP adapters bound a
    call (a stream: its first part within its first-output bound too, as the recording wrapper does)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[ProviderCall] = []

    async def _think(self, bound: float | None) -> None:
        try:
            async with asyncio.timeout(bound):
                await asyncio.sleep(self.delay)
        except TimeoutError:
            raise provider_error("timeout", f"no answer within {bound:g} s") from None

    async def request(self, call: ProviderCall) -> Reply:
        self.calls.append(call)
        await self._think(call.timeout_s)
        return reply("Forty-two.")

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        self.calls.append(call)
        await self._think(call.first_wait_s())
        yield TextDelta("Forty-two.")
        yield reply("Forty-two.")


def bounded(seconds: float | None, *, stream: bool = False) -> TaskRouted:
    task = routed("deep", stream=stream)
    return task.model_copy(update={"task": task.task.model_copy(update={"timeout_s": seconds})})


@pytest.mark.parametrize("stream", [False, True])
async def test_without_a_bound_from_its_client_a_slow_answer_is_cut_at_the_executors_limits(
    stream: bool,
) -> None:
    thinker = Thinker(0.6)
    outcome = await run(bounded(None, stream=stream), {"deep": thinker}, Bus(), policy=TIGHT)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_timeout", outcome
    assert thinker.calls[0].timeout_s == pytest.approx(0.2)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_task_its_client_waits_longer_for_is_answered_by_a_slow_model(stream: bool) -> None:
    thinker = Thinker(0.6)
    outcome = await run(bounded(2.0, stream=stream), {"deep": thinker}, Bus(), policy=TIGHT)
    assert isinstance(outcome, TaskCompleted) and outcome.content == "Forty-two.", outcome
    call = thinker.calls[0]
    # the call may take what is left of the task's 2 s, not the executor's 0.2 s per call
    assert call.timeout_s is not None and 1.5 < call.timeout_s <= 2.0
    if stream:
        assert call.first_output_s is not None and 1.5 < call.first_output_s <= 2.0


async def test_a_shorter_bound_than_the_executors_shortens_the_task() -> None:
    thinker = Thinker(0.6)
    outcome = await run(bounded(0.1), {"deep": thinker}, Bus(), policy=TIGHT)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_timeout", outcome
    assert thinker.calls[0].timeout_s is not None and thinker.calls[0].timeout_s <= 0.1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_bound_within_the_executors_own_keeps_its_per_call_limit_and_so_its_fallbacks(
    stream: bool,
) -> None:
    """A client that waits no longer than the executor's own deadline asks for no long answer: a provider
    that hangs is cut at the per-call limit and the next model answers, as without a bound. Before, any
    bound let one call take all of it, so a deployment that lowered SWITCHYARD_REQUEST_TIMEOUT_MAX_S to
    its default wait for fast fallbacks (README) still had every SDK request hang on its first model."""
    hung, quick = Thinker(5.0), Thinker(0.0)
    task = routed("deep", "quick", stream=stream)
    # the client waits 1.5 s of the executor's 2: after the hung call's 0.2 s the next model has 1.3 s
    # (with TIGHT's 0.3 s it had 0.1 s, which a loaded CI runner once missed)
    roomy = ExecutionPolicy(retry=TIGHT.retry, call_timeout_s=0.2, task_deadline_s=2.0)
    task = task.model_copy(update={"task": task.task.model_copy(update={"timeout_s": 1.5})})
    outcome = await run(task, {"deep": hung, "quick": quick}, Bus(), policy=roomy)
    assert isinstance(outcome, TaskCompleted) and outcome.model == "quick/model-quick", outcome
    assert hung.calls[0].timeout_s == pytest.approx(0.2)


async def test_a_bound_past_the_stream_cap_is_held_to_the_cap() -> None:
    thinker = Thinker(0.0)
    policy = ExecutionPolicy(call_timeout_s=5, task_deadline_s=10, stream_max_s=30)
    outcome = await run(bounded(7200.0), {"deep": thinker}, Bus(), policy=policy)
    assert isinstance(outcome, TaskCompleted) and outcome.content == "Forty-two.", outcome
    assert thinker.calls[0].timeout_s is not None and 29 < thinker.calls[0].timeout_s <= 30


async def test_the_timeout_names_the_tasks_own_bound() -> None:
    """A provider that ignores its call's bound is cut by the task's timer, whose message names the
    bound its client asked for, not the executor's default."""

    class Deaf(Thinker):
        async def _think(self, bound: float | None) -> None:
            await asyncio.sleep(self.delay)

    outcome = await run(bounded(0.15), {"deep": Deaf(5.0)}, Bus(), policy=TIGHT)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_timeout", outcome
    assert outcome.error_message == "the task did not finish within its deadline (0.15 s)"


@pytest.mark.parametrize("histogram", [metrics.CALL_SECONDS, metrics.TTFT_SECONDS, gateway_metrics.LATENCY])
def test_the_latency_buckets_reach_the_longest_call_a_client_may_ask(histogram: Histogram) -> None:
    """A call may now last SWITCHYARD_REQUEST_TIMEOUT_MAX_S: with buckets ending at 120 s every longer one
    fell in +Inf, and the dashboards' quantiles (histogram_quantile) stopped at 120 s."""
    longest = GatewaySettings().request_timeout_max_s
    bounds = [b for b in histogram._upper_bounds if b != float("inf")]
    assert max(bounds) >= longest
    assert any(120 < b < longest for b in bounds)  # a 5-minute answer is told from a 10-minute one
