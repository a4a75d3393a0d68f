"""A bus service's liveness (`python -m switchyard.common.healthcheck SERVICE --liveness`): its /metrics
is served by prometheus_client on a thread of its own, which answers while the event loop, where every
handler and the lag gauges run, is wedged. The loop's heartbeat, a gauge it sets every few seconds, says
whether the loop still runs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from switchyard.cli.processes import free_port
from switchyard.common import healthcheck, service

pytestmark = pytest.mark.unit


@pytest.fixture
def served() -> Iterator[tuple[int, Gauge]]:
    """A process's /metrics as prometheus_client serves it, with the heartbeat on its own registry."""
    registry = CollectorRegistry()
    heartbeat = Gauge(service.HEARTBEAT.describe()[0].name, "heartbeat", registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port, heartbeat
    server.shutdown()
    thread.join()


def test_a_loop_that_beats_is_alive(served: tuple[int, Gauge]) -> None:
    port, heartbeat = served
    heartbeat.set(time.time() - 5)
    assert healthcheck.check_metrics(port, timeout_s=2) is None


def test_a_wedged_loop_is_not_alive_though_its_metrics_answer(served: tuple[int, Gauge]) -> None:
    port, heartbeat = served
    heartbeat.set(time.time() - healthcheck.LOOP_STALL_S - 5)
    problem = healthcheck.check_metrics(port, timeout_s=2)
    assert problem is not None and "event loop" in problem
