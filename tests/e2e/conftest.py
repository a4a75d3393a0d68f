"""The whole stack, started the way `make run` starts it (`switchyard up`), once per test session."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from switchyard.cli.devstack import START_ORDER
from switchyard.cli.nats_users import url_with_credentials
from switchyard.cli.processes import free_port, free_ports


@dataclass
class RunningStack:
    proc: subprocess.Popen[bytes]
    var_dir: Path
    http_port: int
    nats_port: int
    output: Path
    metrics_base_port: int = 0

    @property
    def metrics_targets(self) -> dict[str, str]:
        """Each service's /metrics (the gateway's is on its HTTP port), as `switchyard up` numbers them."""
        ports = {name: self.metrics_base_port + n for n, name in enumerate(START_ORDER) if name != "gateway"}
        return {"gateway": f"127.0.0.1:{self.http_port}"} | {k: f"127.0.0.1:{v}" for k, v in ports.items()}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def nats_url(self) -> str:
        """The bus as the CLI's `operator` user (the embedded run's NATS lets no one in without one)."""
        return url_with_credentials(self.bare_nats_url, self.var_dir)

    @property
    def bare_nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def api_key(self) -> str:
        return (self.var_dir / "dev-api-key").read_text().strip()

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.var_dir / 'switchyard.db'}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "switchyard.cli.main", *args],
            env={
                **os.environ,
                **stack_env(self.var_dir, self.http_port, self.nats_port, self.metrics_base_port),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def metrics_port_block() -> int:
    """The first of as many free ports in a row as `switchyard up` has bus services, for their /metrics."""
    return free_ports(len(START_ORDER))


def stack_env(var_dir: Path, http_port: int, nats_port: int, metrics_base_port: int = 0) -> dict[str, str]:
    return {
        "SWITCHYARD_VAR_DIR": str(var_dir),
        "SWITCHYARD_HTTP_PORT": str(http_port),
        "SWITCHYARD_NATS_PORT": str(nats_port),
        "SWITCHYARD_NATS_MONITOR_PORT": str(free_port()),
        "SWITCHYARD_METRICS_BASE_PORT": str(metrics_base_port),
        "SWITCHYARD_NATS_URL": "",
        # The local model samples; a fixed seed makes its answers repeatable so content checks are fair.
        "SWITCHYARD_LOCAL_SEED": "7",
    }


def start_stack(
    var_dir: Path,
    output: Path,
    *,
    http_port: int | None = None,
    nats_port: int | None = None,
    env: dict[str, str] | None = None,
) -> RunningStack:
    """`env`: more variables for this stack (a provider's `OPENAI_API_KEY`, `OPENAI_BASE_URL`, ...); the
    caller's own provider variables are never passed on."""
    http_port = http_port or free_port()
    nats_port = nats_port or free_port()
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_API_KEY"))
    }
    metrics_base_port = metrics_port_block()
    environ.update(stack_env(var_dir, http_port, nats_port, metrics_base_port), **(env or {}))
    environ.pop("SWITCHYARD_NATS_URL")
    # `switchyard up` also starts the SIEM exporter when a destination is set: here JSON Lines in OCSF.
    environ.update(SWITCHYARD_SIEM_URL=f"file://{var_dir / 'siem.jsonl'}", SWITCHYARD_SIEM_FORMAT="ocsf")
    with open(output, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "switchyard.cli.main", "up"],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack = RunningStack(proc, var_dir, http_port, nats_port, output, metrics_base_port)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"switchyard up exited with {proc.returncode}:\n{output.read_text()[-4000:]}")
        if "Switchyard is running." in output.read_text(errors="replace"):
            return stack
        time.sleep(0.25)
    stop_stack(stack)
    raise TimeoutError(f"the stack did not start:\n{output.read_text()[-4000:]}")


def stop_stack(stack: RunningStack) -> int:
    if stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            stack.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
            stack.proc.wait()
    return stack.proc.returncode


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    base = tmp_path_factory.mktemp("stack")
    running = start_stack(base / "var", base / "up.log")
    try:
        yield running
    finally:
        stop_stack(running)


@pytest.fixture(scope="session")
def bus_tenant(stack: RunningStack) -> str:
    """An organisation the tests make (`POST /v1/admin/organizations` with make run's platform key) and
    submit on the bus for: the pipeline refuses a task of a tenant that is no organisation."""
    made = httpx.post(
        f"{stack.base_url}/v1/admin/organizations",
        json={"name": "bus-tenant", "admin_email": "admin@bus-tenant.test"},
        headers={"Authorization": f"Bearer {stack.api_key}"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["organization"]["id"])


def wait_for(predicate: object, *, timeout: float = 30.0, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


__all__ = ["RunningStack", "httpx", "start_stack", "stop_stack", "wait_for"]


def tenant_token(tenant_id: str) -> str:
    """A tenant's subject token as another system computes it (README, "The bus contract"): the first 16
    hex digits of the SHA-256 of its id, none of our code."""
    return hashlib.sha256(tenant_id.encode()).hexdigest()[:16]
