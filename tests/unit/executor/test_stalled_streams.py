"""A stream that goes silent after its first output, past its idle limit: the provider's failure (its
call a `timeout`, charged to its breaker, as a call silent before its first output is), not a call we cut;
unless the provider kept saying it was at work (Anthropic's pings while it buffers a tool's input): then
our bound cut it, and its breaker is not charged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from switchyard.common.events import TaskFailed
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.base import KeepAlive, ProviderCall, Reply, StreamPart, TextDelta
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerState, LocalBreakers
from switchyard.executor.resilience.retry import RetryPolicy
from tests.unit.executor.test_execution import Bus, routed

pytestmark = pytest.mark.unit
POLICY = ExecutionPolicy(
    retry=RetryPolicy(max_retries=1, base_s=0.001, cap_s=0.002),
    call_timeout_s=5,
    task_deadline_s=5,
    stream_idle_s=0.2,
)


class Stalls:
    """Its first words, then nothing (the connection open, no byte), or only pings (`pings`)."""

    def __init__(self, *, pings: bool = False) -> None:
        self._pings = pings

    async def request(self, call: ProviderCall) -> Reply:
        raise AssertionError("streamed")

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        yield TextDelta("The capital")
        while self._pings:
            await asyncio.sleep(0.05)
            yield KeepAlive()
        await asyncio.Event().wait()


async def run(provider: Stalls, bus: Bus, breakers: LocalBreakers) -> TaskFailed:
    outcome = await execute(
        routed("openai", stream=True),
        providers={"openai": provider},
        breakers=breakers,
        policy=POLICY,
        report=bus.report,
        chunks=ChunkSink(bus.publish, tenant_id="acme", task_id="t1"),
    )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_timeout"
    return outcome


async def test_a_stream_silent_past_its_idle_limit_is_its_providers_timeout() -> None:
    bus = Bus()
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1, open_s=60.0))
    outcome = await run(Stalls(), bus, breakers)
    assert outcome.error_message == "the stream sent nothing for 0.2 s (its idle limit)"
    assert bus.decoded()[-1]["error"] == {"code": "provider_timeout", "message": outcome.error_message}
    # recorded as the provider's timeout, and counted against it; billed for the text it sent before it
    # stalled (the provider charged those tokens), an estimate
    calls = [(c.outcome, c.usage.completion_tokens, c.billable, c.usage_estimated) for _, c in bus.calls]
    assert calls == [("timeout", 2, True, True)]
    assert await breakers.state("openai/model-openai") is BreakerState.OPEN


async def test_a_stream_that_pings_past_its_idle_limit_is_not_its_providers_failure() -> None:
    bus = Bus()
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1, open_s=60.0))
    outcome = await run(Stalls(pings=True), bus, breakers)
    assert outcome.error_message == "the stream sent nothing for 0.2 s (its idle limit)"
    assert [c.outcome for _, c in bus.calls] == ["cut_short"]
    assert await breakers.state("openai/model-openai") is BreakerState.CLOSED
