"""The systems a benchmark compares, each started as its user would start it, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LITELLM_BIN = ROOT / "bench" / ".venv-litellm" / "bin" / "litellm"
LITELLM_VERSION = "1.80.17"  # never 1.82.7 or 1.82.8 (compromised releases)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(
    url: str, timeout: float, proc: subprocess.Popen[bytes], headers: dict[str, str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@dataclass
class System:
    name: str
    base_url: str  # ends with /v1
    key: str
    model: str
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    notes: dict[str, str] = field(default_factory=dict)
    # Switchyard's nats-server monitor: measurements wait until its consumers have drained (measure.py)
    monitor_port: int | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_upstream(*, latency_ms: float, chunks: int, chunk_gap_ms: float) -> System:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "upstream.py"),
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
            "--chunks",
            str(chunks),
            "--chunk-gap-ms",
            str(chunk_gap_ms),
        ],
        start_new_session=True,
    )
    system = System("upstream (direct)", f"http://127.0.0.1:{port}/v1", "sk-bench", "bench-model", proc)
    _wait_http(f"{system.base_url}/models", 20, proc)
    return system


def start_switchyard(upstream: System, extra_env: dict[str, str] | None = None) -> System:
    workdir = Path(tempfile.mkdtemp(prefix="sy-bench-"))
    port, nats_port, monitor_port = _free_port(), _free_port(), _free_port()
    env = {
        **os.environ,
        "SWITCHYARD_VAR_DIR": str(workdir / "var"),
        "SWITCHYARD_HTTP_PORT": str(port),
        "SWITCHYARD_NATS_PORT": str(nats_port),
        "SWITCHYARD_NATS_MONITOR_PORT": str(monitor_port),
        "SWITCHYARD_METRICS_BASE_PORT": "0",
        "SWITCHYARD_LOG_LEVEL": "WARNING",
        "OPENAI_API_KEY": "sk-bench-upstream",
        "OPENAI_BASE_URL": upstream.base_url,
        # Limits stay on (every request still checks them) but above what a benchmark sends: the product
        # plan's 100 requests/min per user would turn most of a run into 429s.
        "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": "10000000",
        "SWITCHYARD_LIMIT_ORG_REQUESTS_PER_MIN": "10000000",
        "SWITCHYARD_LIMIT_GLOBAL_REQUESTS_PER_MIN": "10000000",
        "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "10000",
        "SWITCHYARD_LIMIT_USER_TOKENS_PER_DAY": "10000000000",
        "SWITCHYARD_LIMIT_ORG_TOKENS_PER_DAY": "10000000000",
        "SWITCHYARD_BUDGET_FREE_DAILY_USD": "1000000",
        "SWITCHYARD_BUDGET_PRO_DAILY_USD": "1000000",
        # Every task goes through the encoder, as if every prompt were new: the benchmarks repeat their
        # prompts, and the classifier's reuse of a tenant's repeated prompt would otherwise take it off
        # the measurement (`--env SWITCHYARD_CLASSIFIER_REUSE_SIZE=4096` measures the default).
        "SWITCHYARD_CLASSIFIER_REUSE_SIZE": "0",
    }
    env.update(extra_env or {})
    env.pop("SWITCHYARD_NATS_URL", None)
    log = open(workdir / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "switchyard"), "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while "Switchyard is running." not in (workdir / "up.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"switchyard up failed:\n{(workdir / 'up.log').read_text()[-3000:]}")
        time.sleep(0.25)
    key = (workdir / "var" / "dev-api-key").read_text().strip()
    return System(
        "switchyard",
        f"http://127.0.0.1:{port}/v1",
        key,
        "auto",
        proc,
        workdir,
        {
            "mode": "embedded defaults, everything on (classifier, router, billing, audit ledger); every "
            "task classified (no reuse of repeated prompts); CPU includes the work left after the load "
            "(ledger, billing) until every consumer has drained"
        },
        monitor_port=monitor_port,
    )


def start_litellm(upstream: System, *, workers: int = 1) -> System:
    if not LITELLM_BIN.exists():
        raise FileNotFoundError(
            f"LiteLLM is not installed: python3 -m venv bench/.venv-litellm && "
            f"bench/.venv-litellm/bin/pip install 'litellm[proxy]=={LITELLM_VERSION}'"
        )
    workdir = Path(tempfile.mkdtemp(prefix="litellm-bench-"))
    port = _free_port()
    (workdir / "config.yaml").write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: {upstream.base_url}\n"
        "      api_key: sk-bench-upstream\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        "  master_key: sk-litellm-bench\n"
    )
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True"}
    log = open(workdir / "litellm.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(LITELLM_BIN),
            "--config",
            str(workdir / "config.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=workdir,
    )
    system = System(
        "litellm",
        f"http://127.0.0.1:{port}/v1",
        "sk-litellm-bench",
        "bench-model",
        proc,
        workdir,
        {"version": LITELLM_VERSION, "mode": "proxy, no database, 1 worker"},
    )
    _wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180, proc)
    return system
