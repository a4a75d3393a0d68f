"""The whole platform as `switchyard up` runs it (its supervisor restarts a killed service), answering from a
local fake OpenAI upstream so load is cheap, with a real rsyslog receiving the SIEM export.

The providers in the policy misbehave on purpose: one is down (a closed port), one always answers 429 with
Retry-After, one fails its first calls with 503, one is slow; two answer. Every task has a fallback chain
that reaches a healthy one, so a task fails only if the platform loses it.

The keys are secret-looking on purpose (`SECRETS`): the security suite greps logs, events and the ledger
for them after a run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from switchyard.cli.nats_users import url_with_credentials
from switchyard.cli.processes import free_port
from tests.support.fake_openai import FakeOpenAI
from tests.support.ports import RefusedPort
from tests.support.rsyslog import Rsyslog
from tests.support.servers import BackgroundServer

PROVIDER_KEY = "sk-proj-CHAOSsecret0123456789abcdefXYZ"
ANTHROPIC_KEY = "sk-ant-api03-CHAOSsecretAnthropic987654321"
SIGNING_KEY = (
    "c4a05ec7e7c0ffee5ec7e70123456789abcdef0123456789abcdef0123456789"  # ledger checkpoints (Ed25519)
)
SECRETS = (PROVIDER_KEY, ANTHROPIC_KEY, SIGNING_KEY)
SERVICES = ("gateway", "classifier", "router", "executor", "billing", "audit")


def policy(fast_models: bool = True) -> dict[str, object]:
    def model(mid: str, provider: str, upstream: str, tier: str, price: float) -> dict[str, object]:
        return {
            "id": mid,
            "provider": provider,
            "upstream": upstream,
            "tier": tier,
            "input_per_1k": price,
            "output_per_1k": price * 2,
            "context_window": 16000,
        }

    return {
        "version": "chaos",
        "thresholds": {"fast_below": 0.3, "premium_above": 0.9},
        "models": [
            model("down/m", "down", "gpt-down", "fast", 0.00001),
            model("limited/m", "limited", "limited-1000000000", "fast", 0.00002),
            model("flaky/m", "flaky", "flaky-25", "fast", 0.00003),
            model("ok/fast", "ok", "chaos-fast", "fast", 0.0001),
            model("slow/m", "slow", "slow-0.2", "standard", 0.0002),
            model("ok/standard", "ok", "chaos-standard", "standard", 0.001),
            model("ok/premium", "ok", "chaos-premium", "premium", 0.01),
        ],
        "health": {"min_samples": 5, "recovery_s": 2.0},
    }


@dataclass
class ChaosStack:
    folder: Path
    database_url: str | None = None
    nats_url: str | None = None
    stream_replicas: int = 1
    siem: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    nats_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    fake: FakeOpenAI = field(default_factory=lambda: FakeOpenAI(api_key=PROVIDER_KEY))
    down: RefusedPort = field(default_factory=RefusedPort)  # the "down" provider's port: refused
    upstream: BackgroundServer | None = None
    rsyslog: Rsyslog | None = None
    exporter: subprocess.Popen[bytes] | None = None

    @property
    def var_dir(self) -> Path:
        return self.folder / "var"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def bus_url(self) -> str:
        # the embedded run's NATS lets no one in without a user: the CLI's `operator`
        return self.nats_url or url_with_credentials(f"nats://127.0.0.1:{self.nats_port}", self.var_dir)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'switchyard.db'}"

    @property
    def api_key(self) -> str:
        return (self.var_dir / "dev-api-key").read_text().strip()

    def tenant_id(self) -> str:
        """The organisation of the load's key (`api_key`)."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        answer = httpx.get(f"{self.base_url}/v1/admin/organization", headers=headers, timeout=10.0)
        answer.raise_for_status()
        return str(answer.json()["id"])

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "logs"

    def env(self) -> dict[str, str]:
        assert self.upstream is not None
        down_port = self.down.port
        extra = {
            "down": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{down_port}/v1",
                "api_key": PROVIDER_KEY,
            },
            **{
                name: {"kind": "openai", "base_url": f"{self.upstream.url}/v1", "api_key": PROVIDER_KEY}
                for name in ("limited", "flaky", "slow", "ok")
            },
        }
        policy_path = self.folder / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy()))
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "SWITCHYARD_"))
        }
        env.update(
            {
                "SWITCHYARD_VAR_DIR": str(self.var_dir),
                "SWITCHYARD_HTTP_PORT": str(self.http_port),
                "SWITCHYARD_NATS_PORT": str(self.nats_port),
                "SWITCHYARD_NATS_MONITOR_PORT": str(free_port()),
                "SWITCHYARD_METRICS_BASE_PORT": "0",
                "SWITCHYARD_POLICY_PATH": str(policy_path),
                "SWITCHYARD_LOCAL_ENABLED": "false",
                "SWITCHYARD_EXTRA_PROVIDERS": json.dumps(extra),
                "ANTHROPIC_API_KEY": ANTHROPIC_KEY,  # configured, never called: it must not leak either
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{down_port}",
                "SWITCHYARD_STREAM_REPLICAS": str(self.stream_replicas),
                "SWITCHYARD_AUDIT_SIGNING_KEY": SIGNING_KEY,
                # A killed executor's tasks come back after ack_wait; keep it short so the run is bounded.
                "SWITCHYARD_ACK_WAIT_S": "4",
                "SWITCHYARD_HEARTBEAT_S": "1",
                "SWITCHYARD_EXECUTOR_CONCURRENCY": "32",
                "SWITCHYARD_RETRY_MAX": "1",
                "SWITCHYARD_RETRY_BASE_S": "0.01",
                "SWITCHYARD_RETRY_CAP_S": "0.05",
                "SWITCHYARD_RETRY_AFTER_MAX_S": "0.2",
                "SWITCHYARD_CALL_TIMEOUT_S": "5",
                "SWITCHYARD_BREAKER_OPEN_S": "2",
                "SWITCHYARD_HEALTH_REFRESH_S": "0.5",
                "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": "1000000",
                "SWITCHYARD_LIMIT_ORG_REQUESTS_PER_MIN": "1000000",
                "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "100000",
                "SWITCHYARD_LIMIT_GLOBAL_REQUESTS_PER_MIN": "1000000",
                "SWITCHYARD_ASYNC_TASK_TIMEOUT_S": "600",
                # A stopped service lets its work run this long, then cuts it: short, so the rolling
                # restart (`scenarios.restart_services`) cuts some and the run stays bounded.
                "SWITCHYARD_STOP_GRACE_S": "2",
            }
        )
        if self.database_url:
            env["SWITCHYARD_DATABASE_URL"] = self.database_url
        if self.nats_url:
            env["SWITCHYARD_NATS_URL"] = self.nats_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 240.0) -> ChaosStack:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.upstream = BackgroundServer(self.fake.app).__enter__()
        env = self.env()
        self._env = env
        out = self.folder / "up.log"
        with open(out, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "switchyard.cli.main", "up"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while "Switchyard is running." not in out.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"switchyard up did not start:\n{out.read_text()[-4000:]}")
            time.sleep(0.25)
        if self.siem:
            try:
                self.start_siem()
            except BaseException:  # no rsyslog here, say: `switchyard up` must not be left running
                self.stop()
                raise
        return self

    def start_siem(self) -> None:
        self.rsyslog = Rsyslog(self.folder / "rsyslog").start()
        self.start_siem_exporter()

    def start_siem_exporter(self) -> None:
        assert self.rsyslog is not None
        env = {
            **self._env,
            "SWITCHYARD_NATS_URL": self.bus_url,
            "SWITCHYARD_DATABASE_URL": self.db_url,
            "SWITCHYARD_SIEM_URL": f"tcp://127.0.0.1:{self.rsyslog.port}",
            "SWITCHYARD_SIEM_FORMAT": "cef",
            "SWITCHYARD_SIEM_POLL_S": "0.2",
            "SWITCHYARD_SIEM_SETTLE_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log_dir / "siem-export.log", "ab") as log:
            self.exporter = subprocess.Popen(
                [sys.executable, "-m", "switchyard.audit.export"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def service_pid(self, name: str) -> int | None:
        """The PID of `python -m switchyard.<name>` among the supervisor's children."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except FileNotFoundError:
            return None
        for pid in children:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if f"switchyard.{name}".encode() in cmd:
                return int(pid)
        return None

    def kill_service(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """kill -9 the service (or send it `sig`: SIGTERM stops it gracefully); returns its PID. The
        supervisor starts a new one once it has exited."""
        pid = self.service_pid(name)
        assert pid is not None, f"{name} is not running"
        os.kill(pid, sig)
        return pid

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Seconds until every service answers again (`/readyz?strict=true`)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                r = httpx.get(f"{self.base_url}/readyz", params={"strict": "true"}, timeout=2.0)
                if r.status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"not ready after {timeout}s: {self.up_log()[-3000:]}")

    def up_log(self) -> str:
        return (self.folder / "up.log").read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self._env, "SWITCHYARD_DATABASE_URL": self.db_url, "SWITCHYARD_NATS_URL": self.bus_url}
        return subprocess.run(
            [sys.executable, "-m", "switchyard.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def stop(self) -> None:
        if self.exporter is not None and self.exporter.poll() is None:
            self.exporter.send_signal(signal.SIGTERM)
            try:
                self.exporter.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.exporter.kill()
                self.exporter.wait()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.rsyslog is not None:
            self.rsyslog.stop()
        if self.upstream is not None:
            self.upstream.__exit__(None, None, None)
            self.upstream = None
        self.down.release()


def restart_exporter_after_kill(stack: ChaosStack) -> None:
    """kill -9 the SIEM exporter and start it again: it resumes from its stored position, so entries sent
    but not yet recorded as delivered are sent again (as duplicates with the same sequence number)."""
    assert stack.exporter is not None and stack.rsyslog is not None
    os.kill(stack.exporter.pid, signal.SIGKILL)
    stack.exporter.wait()
    stack.start_siem_exporter()
