"""The shared (JetStream KV) rate limits follow a new limit table as the in-process ones do: an unchanged
limit keeps this replica's lease (no write to the bucket), a lowered one holds at once, a removed one
lets calls through. A real nats-server."""

from __future__ import annotations

import nats
import pytest

from switchyard.common import kv, subjects
from switchyard.executor.resilience.limits import Limit
from switchyard.executor.resilience.shared import KVRateLimits
from tests.integration.executor.test_shared_state import Clock, js  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


async def test_shared_limits_follow_a_new_table_and_keep_the_leases_of_unchanged_ones(
    js: nats.js.JetStreamContext,  # noqa: F811
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
