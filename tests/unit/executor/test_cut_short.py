"""A call cut by its task's deadline before it had the time the executor gives a call on its own (a client
that waits 0.1 s for a model that takes 0.6, a retry left a sliver of the deadline) is recorded
`cut_short`, billed for its prompt alone (test_abandoned_calls.py), and not held against the provider:
its breaker, shared by every tenant, neither counts it as a failure nor takes it for a success. A timeout
with the full per-call time counts as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switchyard.common.events import TaskFailed, TaskRouted
from switchyard.executor.execution import ExecutionPolicy, breaker_key
from switchyard.executor.providers.base import ProviderCall, StreamPart, TextDelta
from switchyard.executor.providers.recording import CallRecord, RecordingProvider
from switchyard.executor.providers.testing import ScriptedProvider, reply
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerGuard, BreakerState, LocalBreakers
from switchyard.executor.resilience.deadline import Deadline
from switchyard.executor.resilience.retry import RetryingProvider, RetryPolicy
from tests.unit.executor.test_execution import Bus, run
from tests.unit.executor.test_resilience import CALL, Clock
from tests.unit.executor.test_task_timeouts import TIGHT, Thinker, bounded

pytestmark = pytest.mark.unit


def key(task: TaskRouted) -> str:
    return breaker_key(task.decision.candidates[0])


async def ran(
    task: TaskRouted, thinker: Thinker, *, threshold: int = 1, policy: ExecutionPolicy = TIGHT
) -> tuple[TaskFailed, list[str], BreakerState]:
    """The task's failure, its calls' outcomes and its model's breaker after it."""
    breakers = LocalBreakers(BreakerConfig(failure_threshold=threshold))
    bus = Bus()
    outcome = await run(task, {"deep": thinker}, bus, breakers=breakers, policy=policy)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_timeout", outcome
    # cut before any answer: billed, as any timeout of a call that went out, for its prompt alone
    assert all(c.usage.completion_tokens == 0 for _, c in bus.calls if c.billable)
    return outcome, [c.outcome for _, c in bus.calls], await breakers.state(key(task))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_its_clients_short_wait_cut_leaves_the_breaker_closed(stream: bool) -> None:
    _, outcomes, state = await ran(bounded(0.1, stream=stream), Reader(0.6))
    assert outcomes == ["cut_short"]
    assert state is BreakerState.CLOSED


@pytest.mark.parametrize("stream", [False, True])
async def test_a_timeout_with_the_full_per_call_time_still_opens_it(stream: bool) -> None:
    _, outcomes, state = await ran(bounded(None, stream=stream), Reader(0.6))
    assert outcomes == ["timeout"]
    assert state is BreakerState.OPEN


async def test_a_retry_left_less_than_a_calls_time_is_not_held_against_the_provider() -> None:
    """0.2 s a call, 0.3 s a task: the first call times out with its full time (counted), its retry gets
    what is left (about 0.1 s) and is cut short (not counted): two failures would open this breaker."""
    policy = ExecutionPolicy(
        retry=RetryPolicy(max_retries=1, base_s=0.001, cap_s=0.002), call_timeout_s=0.2, task_deadline_s=0.3
    )
    _, outcomes, state = await ran(bounded(None), Reader(0.6), threshold=2, policy=policy)
    assert outcomes == ["timeout", "cut_short"]
    assert state is BreakerState.CLOSED


async def test_a_streams_own_read_timeout_counts_even_when_its_client_waits_less() -> None:
    """The client waits 0.5 s, less than the executor's deadline (1 s), but the provider is silent for
    its whole read timeout (0.2 s, the executor's own): that is the provider's failure."""
    policy = ExecutionPolicy(retry=RetryPolicy(max_retries=0), call_timeout_s=0.2, task_deadline_s=1.0)
    _, outcomes, state = await ran(bounded(0.5, stream=True), Reader(0.6), policy=policy)
    assert outcomes == ["timeout"]
    assert state is BreakerState.OPEN


class Reader(Thinker):
    """Bounds a stream's reads by `timeout_s` alone, as the HTTP adapters do: the first-output bound is
    the recording wrapper's."""

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        self.calls.append(call)
        await self._think(call.timeout_s)
        yield TextDelta("Forty-two.")
        yield reply("Forty-two.")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_half_open_probe_cut_short_gives_its_slot_back_and_closes_nothing(stream: bool) -> None:
    clock = Clock()
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1, open_s=60.0), clock=clock)
    await breakers.record_failure("p/m")
    clock.now += 61
    records: list[CallRecord] = []

    async def on_call(record: CallRecord) -> None:
        records.append(record)

    thinker = Reader(5.0)
    guard = BreakerGuard(
        RecordingProvider(thinker, provider="p", model="p/m", on_call=on_call), breakers, key="p/m"
    )
    with pytest.raises(Exception, match="within") as caught:
        if stream:
            call = ProviderCall(model="m", messages=CALL.messages, first_output_s=0.05, short_bound=True)
            async for _ in guard.stream(call):
                pass
        else:
            await guard.request(
                ProviderCall(model="m", messages=CALL.messages, timeout_s=0.05, short_bound=True)
            )
    assert caught.value.kind == "timeout" and caught.value.cut_short  # type: ignore[attr-defined]
    assert [r.outcome for r in records] == ["cut_short"]
    assert await breakers.state("p/m") is BreakerState.HALF_OPEN  # neither closed nor opened again
    assert await breakers.allow("p/m")  # its probe slot came back at once


async def test_a_call_is_marked_short_only_when_its_deadline_leaves_it_less_than_its_own_time() -> None:
    """30 s a call on its own: within a 60 s deadline it keeps them (not short); within 5 s it is short. A
    stream's first output is short when its task's deadline is shorter than the executor's own."""

    async def bounded_call(deadline: Deadline, *, stream: bool) -> ProviderCall:
        script = ScriptedProvider(reply("ok"))
        retrying = RetryingProvider(script, RetryPolicy(), deadline=deadline, own_call_s=30.0)
        if stream:
            async for _ in retrying.stream(CALL):
                pass
        else:
            await retrying.request(CALL)
        return script.calls[0]

    assert not (await bounded_call(Deadline.within(60), stream=False)).short_bound
    assert (await bounded_call(Deadline.within(5), stream=False)).short_bound
    assert not (await bounded_call(Deadline.within(60), stream=True)).short_bound
    assert (await bounded_call(Deadline.within(60, tightened=True), stream=True)).short_bound
    assert (await bounded_call(Deadline.within(5), stream=True)).short_bound
