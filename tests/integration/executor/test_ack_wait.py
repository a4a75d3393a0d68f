"""A task that waits for a free worker is not run twice. Each replica pulls a task only when one of its
workers is free: a task fetched and held while every worker is busy would pass the consumer's `ack_wait`
without a heartbeat, be redelivered to another replica, and then run on both, twice upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common.events import RouteCandidate, TaskCompleted
from tests.integration.executor.test_scale import nc, replica, results, submit
from tests.integration.pipeline.services import Fleet
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
__all__ = ["nc"]  # the bus client fixture, shared with test_scale
BUSY = RouteCandidate(model="openai/slow-3", provider="openai", upstream_model="slow-3", tier="fast")
NEXT = RouteCandidate(model="openai/slow-1.5", provider="openai", upstream_model="slow-1.5", tier="fast")


@pytest.fixture
def fleet(nats_server: NatsServer, tmp_path: Path) -> Iterator[Fleet]:
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_LOCAL_ENABLED": "false",
        "ANTHROPIC_API_KEY": "",
        "SWITCHYARD_EXECUTOR_CONCURRENCY": "1",
        "SWITCHYARD_ACK_WAIT_S": "1",  # far shorter than the busy tasks: a held task would expire twice
        "SWITCHYARD_HEARTBEAT_S": "0.25",
    }
    f = Fleet(tmp_path, env)
    try:
        yield f
    finally:
        f.stop_all()


async def test_a_task_waiting_for_a_busy_fleet_runs_once(fleet: Fleet, nc: nats.NATS) -> None:
    fake = FakeOpenAI()
    with BackgroundServer(fake.app) as upstream:
        replicas = [replica(fleet, n, upstream.url, fake.api_key) for n in range(2)]
        fleet.wait_ready(*replicas)
        busy = await submit(nc, 2, BUSY, "busy")  # one 3 s task per replica: every worker is taken
        deadline = time.monotonic() + 20
        while fake.scenarios.calls["slow-3"] < 2:
            assert time.monotonic() < deadline, replicas[0].tail()
            await asyncio.sleep(0.05)
        waiting = await submit(nc, 1, NEXT, "next")  # waits 3 s (three ack_waits) for a free worker
        found = await results(nc, busy + waiting, timeout=30)
    assert sorted(found) == sorted(busy + waiting)
    assert all(len(r) == 1 and isinstance(r[0], TaskCompleted) for r in found.values())
    assert fake.scenarios.calls["slow-3"] == 2
    assert fake.scenarios.calls["slow-1.5"] == 1  # called once upstream, not once per replica
