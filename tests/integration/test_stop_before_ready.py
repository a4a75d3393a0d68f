"""A service still waiting for NATS at its start (NATS down, a wrong URL) stops at SIGTERM, with one line
saying so. Before, the signal went unheard while the broker retried its connection: `docker compose stop`
and a pod's deletion waited for the kill at the end of the grace period (625 s for the gateway, 620 s for
the executor in deploy/), with nothing in the log but silence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switchyard.cli.processes import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", ["gateway", "router"])
def test_a_service_waiting_for_nats_stops_at_sigterm(service: str, tmp_path: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")},
        "SWITCHYARD_NATS_URL": dead,
        "SWITCHYARD_HTTP_PORT": str(free_port()),
        "SWITCHYARD_VAR_DIR": str(tmp_path),
    }
    log = tmp_path / f"{service}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"switchyard.{service}"], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 10  # imported and connecting (it says so now; it said nothing before)
        while "connecting to NATS" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(1.0)  # retrying its connection
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{service} still running 15 s after SIGTERM: {log.read_text()[-1000:]}")
        assert time.monotonic() - signalled < 5
        text = log.read_text()
        assert f"{service} stopped before it was ready (NATS at {dead}: not connected yet)" in text, text
        assert "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
