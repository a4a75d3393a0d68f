"""Executors are a work queue: 1, 2 and 4 replicas (real processes) share the routed tasks, and killing
one with SIGKILL in the middle of its tasks loses none of them: they are redelivered to a survivor, and
every task gets exactly one result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.js import api

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
)
from tests.integration.pipeline.services import Fleet, Proc
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
SLOW = RouteCandidate(model="openai/slow-0.4", provider="openai", upstream_model="slow-0.4", tier="fast")
VERY_SLOW = RouteCandidate(model="openai/slow-2", provider="openai", upstream_model="slow-2", tier="fast")


@pytest.fixture
def fleet(nats_server: NatsServer, tmp_path: Path) -> Iterator[Fleet]:
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_LOCAL_ENABLED": "false",
        "ANTHROPIC_API_KEY": "",
        "SWITCHYARD_EXECUTOR_CONCURRENCY": "4",
        "SWITCHYARD_ACK_WAIT_S": "3",
        "SWITCHYARD_HEARTBEAT_S": "0.5",
    }
    f = Fleet(tmp_path, env)
    try:
        yield f
    finally:
        f.stop_all()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_server.url)
    await bus.ensure_streams(client.jetstream())
    yield client
    await client.close()


def replica(fleet: Fleet, n: int, upstream: str, key: str) -> Proc:
    env = {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": f"{upstream}/v1"}
    return fleet.start("switchyard.executor", name=f"executor-{n}", env=env)


async def submit(nc: nats.NATS, count: int, candidate: RouteCandidate, tag: str) -> list[str]:
    publisher = bus.EventPublisher(nc.jetstream(), source="test/router")
    task_ids = []
    for n in range(count):
        task_id = f"{tag}-{n}"
        request = ChatRequest(messages=[ChatMessage(role="user", content=f"task {task_id}")], max_tokens=8)
        task = TaskSubmitted(
            task_id=task_id, tenant_id="acme", request=request, submitted_at=datetime.now(UTC)
        )
        routed = TaskRouted(
            task=task,
            classification=Classification(
                type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
            ),
            decision=RoutingDecision(tier="fast", candidates=[candidate], policy_version="t"),
        )
        await publisher.publish(routed, event_id=ids.new_id(), tenant_id="acme", event_subject=task_id)
        task_ids.append(task_id)
    return task_ids


async def results(nc: nats.NATS, task_ids: list[str], *, timeout: float) -> dict[str, list[object]]:
    """Every result message on the stream for these tasks (duplicates would show as lists of two)."""
    wanted = set(task_ids)
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[object]] = {}
        sub = await nc.jetstream().pull_subscribe(
            subjects.RESULT_ALL,
            stream=subjects.STREAM_EVENTS,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE),
        )
        try:
            while True:
                for msg in await sub.fetch(200, timeout=0.5):
                    _, payload = decode(msg.data)
                    task_id = getattr(payload, "task_id", "")
                    if task_id in wanted:
                        found.setdefault(task_id, []).append(payload)
        except (nats.errors.TimeoutError, TimeoutError):
            pass
        finally:
            await sub.unsubscribe()
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.25)


async def test_one_two_and_four_replicas_share_the_load(fleet: Fleet, nc: nats.NATS) -> None:
    fakes = [FakeOpenAI() for _ in range(4)]
    servers = [BackgroundServer(f.app) for f in fakes]
    for s in servers:
        s.__enter__()
    try:
        running: list[Proc] = []
        timings = {}
        for size in (1, 2, 4):
            new = [replica(fleet, n, servers[n].url, fakes[n].api_key) for n in range(len(running), size)]
            fleet.wait_ready(*new)
            running += new
            before = [f.scenarios.calls["slow-0.4"] for f in fakes]
            started = time.monotonic()
            task_ids = await submit(nc, 8 * size, SLOW, f"scale{size}")
            found = await results(nc, task_ids, timeout=60)
            timings[size] = time.monotonic() - started
            assert sorted(found) == sorted(task_ids)
            assert all(len(r) == 1 and isinstance(r[0], TaskCompleted) for r in found.values())
            served = [f.scenarios.calls["slow-0.4"] - b for f, b in zip(fakes, before, strict=True)][:size]
            assert sum(served) == len(task_ids)
            assert all(n > 0 for n in served), f"{size} replicas, calls per replica: {served}"
        print(f"\nwall time for 8 x replicas tasks of 0.4 s (4 at a time per replica): {timings}")
    finally:
        for s in servers:
            s.__exit__(None, None, None)


async def test_killing_a_replica_mid_task_loses_nothing(fleet: Fleet, nc: nats.NATS) -> None:
    fakes = [FakeOpenAI(), FakeOpenAI()]
    with BackgroundServer(fakes[0].app) as up0, BackgroundServer(fakes[1].app) as up1:
        victim = replica(fleet, 0, up0.url, fakes[0].api_key)
        fleet.wait_ready(victim)
        task_ids = await submit(nc, 8, VERY_SLOW, "kill")
        deadline = time.monotonic() + 20
        while fakes[0].scenarios.calls["slow-2"] < 4:  # four tasks in flight (its concurrency)
            assert time.monotonic() < deadline, victim.tail()
            await asyncio.sleep(0.05)
        victim.kill()  # two seconds before any of them would have answered
        assert not (await results(nc, task_ids, timeout=0))
        survivor = replica(fleet, 1, up1.url, fakes[1].api_key)
        fleet.wait_ready(survivor)
        found = await results(nc, task_ids, timeout=60)
        assert sorted(found) == sorted(task_ids), survivor.tail()
        assert all(len(r) == 1 and isinstance(r[0], TaskCompleted) for r in found.values())
        assert fakes[0].scenarios.calls["slow-2"] == 4  # the victim started four and finished none
        assert fakes[1].scenarios.calls["slow-2"] == 8  # the survivor ran all eight, each once
