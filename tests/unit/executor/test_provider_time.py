"""How long a task waited on providers (`TaskCompleted.provider_ms`), which the gateway subtracts from its
own time for `x-switchyard-overhead-ms`."""

from __future__ import annotations

import asyncio

import pytest

from switchyard.common.events import TaskCompleted
from switchyard.executor.callbook import waited_ms
from switchyard.executor.providers.base import ProviderCall, Reply
from switchyard.executor.providers.testing import ScriptedProvider, fails, reply
from tests.unit.executor.test_execution import Bus, routed, run

pytestmark = pytest.mark.unit


def test_overlapping_calls_count_once_and_gaps_not_at_all() -> None:
    assert waited_ms([]) == 0.0
    assert waited_ms([(0.0, 0.010)]) == pytest.approx(10.0)
    assert waited_ms([(0.0, 0.010), (0.005, 0.020)]) == pytest.approx(20.0)  # a race: the union
    assert waited_ms([(0.030, 0.040), (0.0, 0.010)]) == pytest.approx(20.0)  # a retry after a pause
    assert waited_ms([(0.0, 0.050), (0.010, 0.020)]) == pytest.approx(50.0)  # one inside another


class Slow:
    def __init__(self, inner: ScriptedProvider, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds

    async def request(self, call: ProviderCall) -> Reply:
        await asyncio.sleep(self._seconds)
        return await self._inner.request(call)


async def test_a_completed_task_reports_the_time_spent_waiting_on_its_calls() -> None:
    failing = Slow(ScriptedProvider(fails("server")), 0.05)
    answering = Slow(ScriptedProvider(reply("Paris")), 0.05)
    done = await run(routed("a", "b"), {"a": failing, "b": answering}, Bus())  # type: ignore[dict-item]
    assert isinstance(done, TaskCompleted) and done.attempts == 2
    assert done.provider_ms is not None
    assert 95.0 <= done.provider_ms <= done.latency_ms  # two calls of 50 ms, one after the other
