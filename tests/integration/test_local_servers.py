"""The local nats-server the embedded run and the tests start: a port taken between choosing and binding it
is replaced (when it was ours to choose), and an early exit says why."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import nats
import pytest

from switchyard.cli.processes import NatsServer, PortTaken, free_port

pytestmark = pytest.mark.integration


@contextmanager
def held(port: int) -> Iterator[None]:
    """Another process's listener on `port`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield


async def test_a_chosen_port_taken_before_the_start_is_replaced(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "jetstream")
    taken = server.port
    with held(taken):
        server.start()
        try:
            assert server.port != taken
            nc = await nats.connect(server.url)
            await nc.jetstream().account_info()  # JetStream answers on the new port
            await nc.close()
        finally:
            server.stop()


def test_a_given_port_that_is_taken_fails_with_the_reason(tmp_path: Path) -> None:
    port = free_port()
    with held(port), pytest.raises(PortTaken, match="address already in use"):
        NatsServer(tmp_path / "jetstream", port=port).start()


@pytest.mark.parametrize(("environment", "expected"), [(None, 1), ("2", 2)])
def test_the_server_runs_on_one_thread_unless_gomaxprocs_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str | None, expected: int
) -> None:
    if environment is None:
        monkeypatch.delenv("GOMAXPROCS", raising=False)
    else:
        monkeypatch.setenv("GOMAXPROCS", environment)
    server = NatsServer(tmp_path / "jetstream").start()
    try:
        varz = httpx.get(f"http://127.0.0.1:{server.monitor_port}/varz", timeout=5).json()
        assert varz["gomaxprocs"] == expected
    finally:
        server.stop()
