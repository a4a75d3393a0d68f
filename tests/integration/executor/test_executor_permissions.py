"""The executor's shared state under `switchyard up`'s least-privilege NATS permissions
(`cli/bus_permissions.py`), on a real nats-server with the generated users: breakers (with their mirror's
watch) and rate limits written by the executor's user, tool state and carried calls kept and found, and
the router's user reading the breakers, limits and routing stats its health board routes by. None of these
ran in the end-to-end suite (the local model has no breaker trips, limits or tool calls there); nothing
may be refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.common import kv, subjects
from switchyard.common.events import Usage
from switchyard.common.events.results import ChargedCall
from switchyard.common.policy import load_policy
from switchyard.executor.carried import CarriedCalls, carried_bucket
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerState
from switchyard.executor.resilience.limits import Limit
from switchyard.executor.resilience.shared import KVBreakers, KVRateLimits
from switchyard.executor.tool_state import KVToolStates, tool_state_bucket
from switchyard.router.board import HealthBoard
from tests.support.guarded_bus import GuardedBus, guarded_bus

pytestmark = pytest.mark.integration


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    monkeypatch.setenv("SWITCHYARD_BUS_PROVISIONED", "true")  # as `switchyard up` runs its services
    yield from guarded_bus(tmp_path)


async def test_the_executors_shared_state_and_the_routers_view_of_it_are_refused_nothing(
    guarded: GuardedBus,
) -> None:
    errors: list[str] = []
    executor = await guarded.connect("executor", errors)
    router = await guarded.connect("router", errors)
    try:
        js = executor.jetstream()
        mirror = kv.Mirror(await kv.bucket(js, subjects.KV_BREAKERS))
        await mirror.start()
        try:
            config = BreakerConfig(failure_threshold=2, open_s=30.0, half_open_probes=1)
            breakers = KVBreakers(await kv.bucket(js, subjects.KV_BREAKERS), config, mirror=mirror)
            key = "openai/gpt-4o-mini"
            assert await breakers.allow(key)
            for _ in range(2):
                await breakers.record_failure(key)
            assert await breakers.state(key) is BreakerState.OPEN
        finally:
            await mirror.stop()
        limits = KVRateLimits(await kv.bucket(js, subjects.KV_RATE_LIMITS), {"openai": Limit(rpm=1)})
        assert await limits.try_acquire("openai", tokens=1)
        assert not await limits.try_acquire("openai", tokens=1)
        await limits.close()

        states = KVToolStates(await tool_state_bucket(js))
        await states.save("acme", {"call_1": {"gemini_thought_signature": "c2ln"}})
        assert await states.load("acme", ["call_1"]) == {"call_1": {"gemini_thought_signature": "c2ln"}}
        carried = CarriedCalls(await carried_bucket(js))
        calls = [ChargedCall(model="openai/gpt-4o-mini", usage=Usage(prompt_tokens=5, completion_tokens=1))]
        await carried.keep("acme", "task-1", calls)
        assert await carried.take("acme", "task-1") == calls

        board = HealthBoard(router.jetstream(), refresh_s=0.0)
        signals = await board.signals(load_policy())
        assert signals  # one per model of the policy, read from the three buckets
        assert await board.headroom("acme") is None  # none written: the budgets bucket read
        await executor.flush()
        await router.flush()
    finally:
        await executor.close()
        await router.close()
    assert errors == []
    guarded.assert_clean()
