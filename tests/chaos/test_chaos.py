"""Chaos, bounded to one round (the long form is `make chaos`): under a steady load of tasks on a 3-node
JetStream cluster (R3 streams) and PostgreSQL, kill -9 every service in turn (outages overlapping), the SIEM
exporter, then restart every service in turn with SIGTERM (a rolling restart), kill the stream leader, and
restart PostgreSQL, while the providers fail, answer 429 and slow down, and another system publishes tasks
on the bus and reads their results from its durable consumer.
Nothing accepted may be lost, charged twice or left unaudited; the ledger verifies and the SIEM received
every entry."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.cli.processes import PostgresCluster
from tests.chaos.cluster import NatsCluster
from tests.chaos.scenarios import under_load
from tests.chaos.stack import SERVICES, ChaosStack

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
RATE = 4.0  # tasks a second
BUS_RATE = 1.0  # another system's tasks a second, on the bus (tests/chaos/integrator.py)


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PostgresCluster]:
    base = Path(tempfile.mkdtemp(prefix="switchyard-chaos-pg-"))  # the server runs as `postgres`
    cluster = PostgresCluster(base).start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.copy(base / "postgres.log", tmp_path / "postgres.log")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def clustered(tmp_path: Path, postgres: PostgresCluster) -> Iterator[tuple[ChaosStack, NatsCluster]]:
    nats_cluster = NatsCluster(tmp_path / "nats").start()
    stack = ChaosStack(
        tmp_path / "chaos", database_url=postgres.url(), nats_url=nats_cluster.url, stream_replicas=3
    )
    try:
        stack.start()
        yield stack, nats_cluster
    finally:
        stack.stop()
        nats_cluster.stop()


async def test_every_fault_under_load(
    clustered: tuple[ChaosStack, NatsCluster], postgres: PostgresCluster
) -> None:
    stack, nats_cluster = clustered
    report = await under_load(
        stack,
        rate=RATE,
        gap_s=1.0,
        wait_each=False,
        cluster=nats_cluster,
        postgres=postgres,
        bus_rate=BUS_RATE,
    )
    print("\n" + report.text())
    killed = [f.split(" (")[0] for f in report.faults[: len(SERVICES)]]
    assert killed == [f"kill -9 {s}" for s in SERVICES], report.faults
    restarted = [f.split(" (")[0] for f in report.faults if f.startswith("SIGTERM")]
    assert restarted == [f"SIGTERM {s}" for s in SERVICES], report.faults
    assert any("stream leader" in f for f in report.faults) and any("PostgreSQL" in f for f in report.faults)
    outcome = report.outcome
    # A careful client (Idempotency-Key, retries on 503 and dropped connections) gets nearly every task in.
    assert outcome is not None and outcome.accepted >= 40, report.text()
    assert sum(report.load.refused.values()) <= 0.1 * outcome.accepted, report.text()
    assert outcome.completed == outcome.accepted, report.text()  # every chain reaches a healthy provider
    assert not report.problems, report.text()
    # Another system's tasks on the bus: each answered through its durable consumer across the node loss.
    assert report.bus is not None and len(report.bus.published) >= 10, report.text()
    assert report.siem.get("received", 0) >= len(outcome.ledger_rows), report.text()
    # The misbehaving providers were really called (429 always, 503 first) and the tasks fell back.
    calls = stack.fake.scenarios.calls
    assert calls["limited-1000000000"] + calls["flaky-25"] > 0, dict(calls)
