"""free_port: a port below the kernel's ephemeral range, never the same twice, each xdist worker its own."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from switchyard.cli import processes
from switchyard.cli.processes import OWN_PORTS, free_port

pytestmark = pytest.mark.unit


def test_ports_are_outside_the_ephemeral_range_and_never_repeat() -> None:
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(port in OWN_PORTS and not low <= port <= high for port in ports)
    for port in ports[:20]:  # each is free: a server binds it
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        monkeypatch.setattr(processes, "OWN_PORTS", range(taken, taken + 1))  # the only one is taken
        monkeypatch.setattr(processes, "_handed", set())
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
        port = free_port()
        assert port != taken
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("worker", ["gw0", "gw1", "gw2"])
def test_each_worker_draws_from_its_own_slice(monkeypatch: pytest.MonkeyPatch, worker: str) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    size = len(OWN_PORTS) // 3
    index = int(worker[2:])
    mine = range(OWN_PORTS.start + index * size, OWN_PORTS.start + (index + 1) * size)
    assert all(free_port() in mine for _ in range(50))
