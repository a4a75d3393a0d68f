"""The shared (JetStream KV) rate limits follow a new limit table as the in-process ones do: an unchanged
limit keeps this replica's lease (no write to the bucket), a lowered one holds at once, a removed one
lets calls through. A real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, subjects
from switchyard.executor.resilience.limits import Limit
from switchyard.executor.resilience.shared import KVRateLimits

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def test_shared_limits_follow_a_new_table_and_keep_the_leases_of_unchanged_ones(
    js: nats.js.JetStreamContext,
) -> None:
    bucket = await kv.bucket(js, subjects.KV_RATE_LIMITS)
    limits = KVRateLimits(
        bucket, {"far": Limit(rpm=100_000), "lowered": Limit(rpm=100), "gone": Limit(rpm=1)}, clock=Clock()
    )
    assert await limits.try_acquire("far", tokens=1)  # takes a lease of 16 besides
    assert all([await limits.try_acquire("lowered", tokens=1) for _ in range(10)])
    assert await limits.try_acquire("gone", tokens=1)
    assert not await limits.try_acquire("gone", tokens=1)
    _, revision = await kv.read(bucket, kv.safe_key("far"))

    limits.set_limits({"far": Limit(rpm=100_000), "lowered": Limit(rpm=3)})
    assert all([await limits.try_acquire("far", tokens=1) for _ in range(5)])
    assert (await kv.read(bucket, kv.safe_key("far")))[1] == revision  # from the kept lease: no write
    # 90 left (less this replica's lease, handed back when the ceiling moved), clipped to the new 3
    assert [await limits.try_acquire("lowered", tokens=1) for _ in range(4)] == [True, True, True, False]
    assert all([await limits.try_acquire("gone", tokens=1) for _ in range(5)])
