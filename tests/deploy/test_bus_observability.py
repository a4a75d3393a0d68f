"""The small additions to switchyard.common that deployments rely on, against a real nats-server: stream
replicas from the environment, consumer-lag gauges, bus-level metrics counted once per event, and the
container health check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js import api
from nats.js.errors import APIError
from prometheus_client import REGISTRY

from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import bus, kv, lag, subjects
from switchyard.common.events import UsageRecorded
from switchyard.common.healthcheck import HEARTBEAT_METRIC
from tests.chaos.cluster import NatsCluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def test_stream_replicas_come_from_the_setting(
    js: nats.js.JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWITCHYARD_STREAM_REPLICAS", raising=False)
    await bus.ensure_streams(js)
    info = await js.stream_info(subjects.STREAM_EVENTS)
    assert info.config.num_replicas == 1
    # R3 reaches the server: a single server cannot hold three replicas and says so
    monkeypatch.setenv("SWITCHYARD_STREAM_REPLICAS", "3")
    with pytest.raises(APIError):
        await bus.ensure_streams(js)
    assert (await js.stream_info(subjects.STREAM_EVENTS)).config.num_replicas == 1


async def test_kv_bucket_replicas_come_from_the_setting(
    js: nats.js.JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared state in KV (spend counters, rate limits, breakers, auth changes, the tenant registry) is
    replicated as the streams are: with R3 streams on a 3-node cluster, an R1 bucket dies with its node."""
    monkeypatch.delenv("SWITCHYARD_STREAM_REPLICAS", raising=False)
    await kv.bucket(js, subjects.KV_TENANTS)
    assert (await js.stream_info(f"KV_{subjects.KV_TENANTS}")).config.num_replicas == 1
    # R3 reaches the server, for a new bucket and for one made before: a single server cannot hold three
    # replicas and says so
    monkeypatch.setenv("SWITCHYARD_STREAM_REPLICAS", "3")
    for name in (subjects.KV_BREAKERS, subjects.KV_TENANTS):
        with pytest.raises(APIError):
            await kv.bucket(js, name)


async def test_an_r1_bucket_is_moved_to_r3_and_outlives_its_node(tmp_path: Path) -> None:
    """On a real 3-node cluster: a bucket an earlier version made R1 is moved to R3 when a service opens it
    with SWITCHYARD_STREAM_REPLICAS=3, keeping its entries, which survive the loss of its leader."""
    cluster = NatsCluster(tmp_path / "cluster").start()
    nc = await nats.connect(cluster.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 30
        # the cluster's JetStream elects its meta leader after the servers are up, and a new stream its own
        # leader after it is made (a put at once found none once: "no response from stream")
        while True:
            try:
                old = await kv.bucket(js, subjects.KV_TENANTS, replicas=1)
                await old.put("t.acme", b"kept")
                break
            except (nats.errors.Error, TimeoutError) as exc:
                assert time.monotonic() < deadline, exc
                await asyncio.sleep(0.5)
        moved = await kv.bucket(js, subjects.KV_TENANTS, replicas=3)
        deadline = time.monotonic() + 20
        while (info := await js.stream_info(f"KV_{subjects.KV_TENANTS}")).cluster is None or len(
            [r for r in info.cluster.replicas or [] if r.current]
        ) < 2:
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.2)
        assert info.config.num_replicas == 3
        cluster.node(cluster.stream_leader(f"KV_{subjects.KV_TENANTS}")).kill()
        deadline = time.monotonic() + 30
        while True:
            try:
                assert (await moved.get("t.acme")).value == b"kept"
                break
            except (nats.errors.Error, OSError) as exc:
                assert time.monotonic() < deadline, exc
                await asyncio.sleep(0.5)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        cluster.stop()


def _gauge(name: str, consumer: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"stream": subjects.STREAM_EVENTS, "consumer": consumer})


async def _executor_consumer(js: nats.js.JetStreamContext, **config: Any) -> subjects.Consumer:
    """The streams, and the executor's durable consumer on them (the test pulls as the executor)."""
    await bus.ensure_streams(js, replicas=1)
    executor = subjects.EXECUTOR_CONSUMER
    await js.add_consumer(
        executor.stream,
        api.ConsumerConfig(
            durable_name=executor.durable,
            filter_subject=executor.filter_subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            **config,
        ),
    )
    return executor


async def test_lag_gauges_follow_the_consumer(js: nats.js.JetStreamContext) -> None:
    executor = await _executor_consumer(js)
    for n in range(3):
        await js.publish(executor.filter_subject, b"{}", headers={"Nats-Msg-Id": f"lag-{n}"})
    await js.publish(subjects.TASK_SUBMITTED, b"{}", headers={"Nats-Msg-Id": "other"})  # not the executor's

    await lag.sample(js, executor, now=datetime.now(UTC) + timedelta(seconds=60))
    assert _gauge("switchyard_consumer_pending_messages", "executor") == 3
    assert _gauge("switchyard_consumer_ack_pending_messages", "executor") == 0
    age = _gauge("switchyard_consumer_oldest_unacked_age_seconds", "executor")
    assert age is not None and 60 <= age < 70

    sub = await js.pull_subscribe_bind(executor.durable, stream=executor.stream)
    first, *rest = await sub.fetch(3, timeout=5)
    await lag.sample(js, executor)
    assert _gauge("switchyard_consumer_pending_messages", "executor") == 0
    assert _gauge("switchyard_consumer_ack_pending_messages", "executor") == 3
    for msg in (first, *rest):
        await msg.ack_sync()
    await lag.sample(js, executor)
    assert _gauge("switchyard_consumer_ack_pending_messages", "executor") == 0
    assert _gauge("switchyard_consumer_oldest_unacked_age_seconds", "executor") == 0
    assert lag.consumers_of("executor") == (executor,)
    assert lag.consumers_of("gateway") == ()


async def test_a_task_in_progress_is_not_waiting_work(js: nats.js.JetStreamContext) -> None:
    """A task being run (a stream may run an hour, marked in progress all along) keeps the oldest unacked
    age growing; the oldest waiting age (never delivered yet: the queue's lag) counts only what waits,
    so the pipeline-lag alert, which reads it, does not page for a long stream."""
    executor = await _executor_consumer(js, ack_wait=600)
    await js.publish(executor.filter_subject, b"{}", headers={"Nats-Msg-Id": "long-stream"})
    sub = await js.pull_subscribe_bind(executor.durable, stream=executor.stream)
    [running] = await sub.fetch(1, timeout=5)
    await lag.sample(js, executor, now=datetime.now(UTC) + timedelta(seconds=1200))
    unacked = _gauge("switchyard_consumer_oldest_unacked_age_seconds", "executor")
    assert unacked is not None and unacked >= 1200
    assert _gauge("switchyard_consumer_oldest_waiting_age_seconds", "executor") == 0
    await js.publish(executor.filter_subject, b"{}", headers={"Nats-Msg-Id": "waiting"})
    await lag.sample(js, executor, now=datetime.now(UTC) + timedelta(seconds=45))
    waiting = _gauge("switchyard_consumer_oldest_waiting_age_seconds", "executor")
    assert waiting is not None and 45 <= waiting < 55
    await running.ack_sync()
    [waited] = await sub.fetch(1, timeout=5)
    await waited.ack_sync()
    await lag.sample(js, executor)
    assert _gauge("switchyard_consumer_oldest_waiting_age_seconds", "executor") == 0


async def test_cost_is_counted_once_per_usage_event(js: nats.js.JetStreamContext) -> None:
    await bus.ensure_streams(js, replicas=1)
    publisher = bus.EventPublisher(js, source="test/billing")
    labels = {"tier": "premium", "provider": "anthropic", "model": "anthropic/test-once"}
    usage = UsageRecorded(
        task_id="t1",
        tenant_id="acme",
        model=labels["model"],
        provider="anthropic",
        tier="premium",
        prompt_tokens=1000,
        completion_tokens=200,
        cost_usd=0.03,
    )
    before = REGISTRY.get_sample_value("switchyard_billing_cost_usd_total", labels) or 0.0
    for _ in range(3):  # a redelivered handler re-publishes the same event id
        await publisher.publish(usage, event_id="usage-once", tenant_id="acme")
    after = REGISTRY.get_sample_value("switchyard_billing_cost_usd_total", labels)
    assert after == pytest.approx(before + 0.03)
    tokens = REGISTRY.get_sample_value("switchyard_billing_tokens_total", {**labels, "kind": "completion"})
    assert tokens == 200


@pytest.fixture
def router(nats_server: NatsServer, tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    """The router as its image runs it: metrics on, a fixed instance name."""
    metrics_port = free_port()
    env = {
        **os.environ,
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_METRICS_PORT": str(metrics_port),
        "SWITCHYARD_INSTANCE": "router-a",
        "SWITCHYARD_VAR_DIR": str(tmp_path),
        "SWITCHYARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    }
    log = open(tmp_path / "router.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchyard.router"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "router.log").read_text()[-3000:]
            try:
                if (
                    "switchyard_consumer_pending_messages"
                    in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
                ):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "router.log").read_text()[-3000:]
            time.sleep(0.2)
        yield env, metrics_port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _healthcheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchyard.common.healthcheck", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_check_of_a_running_service(router: tuple[dict[str, str], int]) -> None:
    env, metrics_port = router
    body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
    assert 'switchyard_consumer_pending_messages{consumer="router",stream="SWITCHYARD"}' in body
    (beat,) = [line for line in body.splitlines() if line.startswith(f"{HEARTBEAT_METRIC} ")]
    assert time.time() - float(beat.split()[1]) < 30  # the event loop's, which liveness checks

    ok = _healthcheck(env, "router", "--timeout", "2")
    assert ok.returncode == 0, ok.stderr
    # a sibling answering is not enough when this replica's name is known
    other = _healthcheck({**env, "SWITCHYARD_INSTANCE": "router-b"}, "router", "--timeout", "1")
    assert other.returncode == 1 and "router-b" in other.stderr
    # a service that is not running does not answer
    no_metrics = {k: v for k, v in env.items() if k != "SWITCHYARD_METRICS_PORT"}
    silent = _healthcheck(no_metrics, "billing", "--timeout", "1")
    assert silent.returncode == 1 and "did not answer" in silent.stderr
    assert _healthcheck(env, "router", "--liveness").returncode == 0


def test_health_check_fails_without_the_process(nats_server: NatsServer) -> None:
    env = {**os.environ, "SWITCHYARD_NATS_URL": nats_server.url, "SWITCHYARD_METRICS_PORT": str(free_port())}
    dead = _healthcheck(env, "router", "--liveness", "--timeout", "1")
    assert dead.returncode == 1 and "/metrics" in dead.stderr
