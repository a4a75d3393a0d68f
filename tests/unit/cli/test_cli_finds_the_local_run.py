"""The CLI commands that call a running platform (`keys`, `dlq`) find the one `switchyard up` started with
the same environment: `SWITCHYARD_HTTP_PORT` / `SWITCHYARD_NATS_PORT` (README, Quick tour), not the
default ports, where another run (or nothing) listens. Nothing listens on the ports here, so each command
says which address it could not reach, in one line and without a stack trace."""

from __future__ import annotations

import socket

import pytest

from switchyard.cli.main import main

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SWITCHYARD_GATEWAY_URL", "SWITCHYARD_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWITCHYARD_API_KEY", "sy_test_key")
    return monkeypatch


def test_keys_calls_the_gateway_on_switchyard_http_port(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    env.setenv("SWITCHYARD_HTTP_PORT", str(port))
    assert main(["keys", "list"]) == 1
    said = capsys.readouterr().err  # one line naming the command, as every other refusal of the CLI
    assert said.startswith(f"switchyard keys: cannot reach the gateway at http://127.0.0.1:{port}: ")
    assert said.count("\n") == 1


def test_dlq_reads_the_bus_on_switchyard_nats_port(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    env.setenv("SWITCHYARD_NATS_PORT", str(port))
    assert main(["dlq", "list"]) == 1
    said = capsys.readouterr().err
    assert said.startswith(f"switchyard dlq: cannot reach NATS at nats://127.0.0.1:{port}")
    assert "Traceback" not in said
