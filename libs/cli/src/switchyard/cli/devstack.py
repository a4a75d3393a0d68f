"""The embedded run: nats-server, the migrated SQLite database and the six services on one machine.

Each service is its own OS process, started as `python -m switchyard.<service>` with its settings in the
environment, so the same services run unchanged under docker compose or Kubernetes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import nats
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchyard.cli import bus_permissions, bus_stores, nats_users
from switchyard.cli.db_cmd import upgrade_all
from switchyard.cli.processes import NatsServer, port_open
from switchyard.common import event_id_key
from switchyard.common.config import STOP_GRACE_S, CommonSettings
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.logs import redact

START_ORDER = ("audit", "billing", "executor", "router", "classifier", "gateway")
# Started too when their setting is in the environment: the SIEM exporter (a destination to send the
# ledger to) and the classifier's outcome recorder (organisations that opted in to learning from outcomes).
OPTIONAL = (
    ("siem-exporter", "switchyard.audit.export", "SWITCHYARD_SIEM_URL"),
    ("classifier-outcomes", "switchyard.classifier.outcomes", "SWITCHYARD_CLASSIFIER_OUTCOME_TENANTS"),
)
MAX_RESTARTS = 5
# The object stores the gateway opens reserve their whole size in JetStream's file storage when they are
# made, and a nats-server has 75 % of the disk that was free when it started: the deployment's defaults
# (files 4 GiB, batch vectors 1 GiB, with the embeddings' 1 GiB) would ask a laptop for ~8 GB of free disk.
# The embedded run keeps them smaller unless they are set: ~3 GB free is enough.
EMBEDDED_STORES = {
    "SWITCHYARD_FILES_BUCKET_BYTES": str(1024**3),
    "SWITCHYARD_BATCH_VECTORS_BYTES": str(256 * 1024**2),
    "SWITCHYARD_RESPONSES_BUCKET_BYTES": str(256 * 1024**2),
}


def embedded_sizes() -> None:
    """EMBEDDED_STORES in this process's environment where unset: the sizes the services of the embedded
    run get, for the operator's provisioning (bus_stores.py) to make their stores with."""
    for setting, size in EMBEDDED_STORES.items():
        if not os.environ.get(setting, "").strip():
            os.environ[setting] = size


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_", extra="ignore")

    var_dir: Path = Path("var")
    http_port: int = 8080
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    nats_url: str | None = Field(default=None, description="use this NATS instead of starting one")
    metrics_base_port: int = Field(default=9101, description="services get base+0..4 for /metrics; 0 = off")
    ready_timeout_s: float = 180.0
    # Replicas (for scaling measurements): executors and classifiers share their durable consumers (each
    # task goes to one of them); gateways share the HTTP port (SO_REUSEPORT, the kernel spreads connections).
    executor_replicas: int = Field(default=1, ge=1, le=16)
    gateway_replicas: int = Field(default=1, ge=1, le=16)
    classifier_replicas: int = Field(default=1, ge=1, le=16)
    stop_grace_s: float = Field(default=STOP_GRACE_S, gt=0, le=3600)

    def bus_url(self) -> str:
        """The bus of this run: SWITCHYARD_NATS_URL, else the nats-server `switchyard up` starts."""
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.var_dir = settings.var_dir.expanduser().resolve()
        self.logs = self.var_dir / "logs"
        self.nats: NatsServer | None = None
        self.children: list[Child] = []
        self.key_file = self.var_dir / "dev-api-key"
        self.dev_tenant: str | None = None  # the dev organisation's id (`prepare_database`)

    @property
    def nats_url(self) -> str:
        return self.settings.bus_url()

    def start_nats(self) -> None:
        if self.settings.nats_url:
            return
        if port_open(self.settings.nats_port):
            raise SystemExit(
                f"port {self.settings.nats_port} is in use (another `make run`?); "
                "set SWITCHYARD_NATS_PORT, or SWITCHYARD_NATS_URL to use a running NATS"
            )
        self.nats = NatsServer(
            self.var_dir / "jetstream",
            port=self.settings.nats_port,
            monitor_port=self.settings.nats_monitor_port,
            # another system's user (`integrator`, scoped to the dev organisation) beside the services'
            users=nats_users.ensure_passwords(self.var_dir, (*nats_users.USERS, bus_permissions.INTEGRATOR)),
            permissions=functools.partial(bus_permissions.user_permissions, integrators=(self.integrator(),)),
        ).start(log_file=self.logs / "nats.log")

    async def provision_bus(self) -> None:
        """Every stream and bucket, made (or brought to this run's settings) as `operator`, before the
        services start: they connect as users that may only open them (SWITCHYARD_BUS_PROVISIONED)."""
        who = nats_users.embedded_credentials(self.var_dir)
        nc = await nats.connect(
            self.nats_url, connect_timeout=5, **(who.connect_options() if who is not None else {})
        )
        try:
            await bus_stores.provision(nc.jetstream())
        finally:
            await nc.close()

    def integrator(self) -> bus_permissions.Integrator:
        """Its `integrator`: scoped to the dev organisation (the tenant of `var/dev-api-key`), which
        `prepare_database` reads before the bus starts."""
        if self.dev_tenant is None:
            raise SystemExit("the database is prepared before the bus: no dev organisation to scope to")
        return bus_permissions.Integrator(bus_permissions.INTEGRATOR, (self.dev_tenant,))

    async def prepare_database(self, common: CommonSettings) -> bool:
        from switchyard.gateway.tenants import dev_tenant_id, ensure_dev_tenant

        await upgrade_all(common.db_url(), pgbouncer=common.database_pgbouncer)
        engine = create_engine(common.db_url(), **common.db_options())
        try:
            created = await ensure_dev_tenant(sessionmaker(engine), key_file=self.key_file)
            self.dev_tenant = await dev_tenant_id(sessionmaker(engine))
            return created
        finally:
            await engine.dispose()

    def replicas(self, name: str) -> int:
        if name == "executor":
            return self.settings.executor_replicas
        if name == "gateway":
            return self.settings.gateway_replicas
        if name == "classifier":
            return self.settings.classifier_replicas
        return 1

    def service_env(self, index: int, name: str, replica: int = 1) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SWITCHYARD_NATS_URL=self.nats_url,
            SWITCHYARD_VAR_DIR=str(self.var_dir),
            SWITCHYARD_HTTP_PORT=str(self.settings.http_port),
            SWITCHYARD_INSTANCE=f"{name}-{replica}",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        if name in nats_users.BUSLESS:  # no bus: no password of anyone's in its environment
            for setting in ("USER", "PASSWORD", "PASSWORD_FILE"):
                env.pop(f"SWITCHYARD_NATS_{setting}", None)
            for setting in (event_id_key.SETTING, event_id_key.FILE_SETTING):
                env.pop(setting, None)
        elif not self.settings.nats_url:
            # the nats-server this run starts: the service's own user, its password in a file (0600)
            user = nats_users.user_of(name)
            env.update(
                SWITCHYARD_NATS_USER=user,
                SWITCHYARD_NATS_PASSWORD_FILE=str(nats_users.password_path(self.var_dir, user)),
            )
            env.pop("SWITCHYARD_NATS_PASSWORD", None)
            env["SWITCHYARD_BUS_PROVISIONED"] = "true"  # made by `operator` (provision_bus)
        if name not in nats_users.BUSLESS:
            self._event_id_secret(env)
        for setting, size in EMBEDDED_STORES.items():
            if not env.get(setting, "").strip():
                env[setting] = size
        if name == "gateway" and self.settings.gateway_replicas > 1:
            env["SWITCHYARD_HTTP_REUSE_PORT"] = "true"
        if self.settings.metrics_base_port and name != "gateway":
            # Replica 1 keeps base+index; further replicas go above every first one.
            offset = index if replica == 1 else len(START_ORDER) * (replica - 1) + index
            env["SWITCHYARD_METRICS_PORT"] = str(self.settings.metrics_base_port + offset)
        return env

    def _event_id_secret(self, env: dict[str, str]) -> None:
        """The secret every service keys derived event ids with: the one set in the environment, else the
        run's `<var>/event-id.key` (made on its first run, kept across runs), named to each service."""
        for setting in (event_id_key.SETTING, event_id_key.FILE_SETTING):
            if not env.get(setting, "").strip():
                env.pop(setting, None)
        if event_id_key.SETTING not in env and event_id_key.FILE_SETTING not in env:
            path = self.var_dir / event_id_key.KEY_FILE
            event_id_key.ensure_file(path)
            env[event_id_key.FILE_SETTING] = str(path)

    def start_services(self) -> None:
        for index, name in enumerate(START_ORDER):
            count = self.replicas(name)
            for replica in range(1, count + 1):
                label = name if count == 1 else f"{name}-{replica}"
                child = Child(
                    name=label,
                    cmd=[sys.executable, "-m", f"switchyard.{name}"],
                    env=self.service_env(index, name, replica),
                    log_path=self.logs / f"{label}.log",
                )
                child.start()
                self.children.append(child)
        for name, module, setting in OPTIONAL:
            if not os.environ.get(setting, "").strip():
                continue
            env = self.service_env(0, name)
            env.pop("SWITCHYARD_METRICS_PORT", None)
            env["SWITCHYARD_INSTANCE"] = name
            child = Child(
                name=name,
                cmd=[sys.executable, "-m", module],
                env=env,
                log_path=self.logs / f"{name}.log",
            )
            child.start()
            self.children.append(child)

    def wait_ready(self, stopping: Callable[[], bool]) -> None:
        url = f"http://127.0.0.1:{self.settings.http_port}/readyz?strict=true"
        deadline = time.monotonic() + self.settings.ready_timeout_s
        last = ""
        while time.monotonic() < deadline:
            if stopping():
                raise SystemExit("interrupted before Switchyard was ready")
            self.supervise()
            try:
                r = httpx.get(url, timeout=2.0)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.25)
        raise SystemExit(f"Switchyard did not become ready in {self.settings.ready_timeout_s:g}s: {last}")

    def supervise(self) -> None:
        """Restarts a service that died (a few times a minute at most, then gives up loudly)."""
        for child in self.children:
            if child.alive() or child.proc is None:
                continue
            code = child.proc.returncode
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < 60] + [now]
            tail = _tail(child.log_path)
            if len(child.restarts) > MAX_RESTARTS:
                raise SystemExit(f"{child.name} keeps exiting (code {code}); last log lines:\n{tail}")
            print(
                f"! {child.name} exited with code {code}; restarting. Last log lines:\n{tail}",
                file=sys.stderr,
            )
            child.start()

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.alive():
                assert child.proc is not None
                child.proc.send_signal(signal.SIGTERM)
        # each service lets its work run for its stop grace, then drains (the gateway: 5 s for the
        # outcomes of the tasks it cut) and disconnects; killed only past that
        deadline = time.monotonic() + self.settings.stop_grace_s + 10
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        if self.nats is not None:
            self.nats.stop()

    def _optional_lines(self) -> list[str]:
        lines = []
        if siem := os.environ.get("SWITCHYARD_SIEM_URL", "").strip():
            where = urlsplit(siem)  # scheme, host and port only: never credentials in a banner
            fmt = os.environ.get("SWITCHYARD_SIEM_FORMAT", "cef")
            if where.scheme == "file":
                target = f"file://{where.path}"
            else:
                target = f"{where.scheme}://{where.hostname}" + (f":{where.port}" if where.port else "")
            lines.append(f"  SIEM       exporting the ledger to {target} as {fmt}")
        if os.environ.get("SWITCHYARD_CLASSIFIER_OUTCOME_TENANTS", "").strip():
            lines.append("  Outcomes   recording classified tasks of the opted-in organisations")
        return lines

    def banner(self, created_key: bool, common: CommonSettings) -> str:
        port = self.settings.http_port
        rel = _relative(self.key_file)
        providers = ["local (SmolLM2-135M-Instruct on this CPU)"]
        if os.environ.get("OPENAI_API_KEY"):
            providers.append(f"openai ({os.environ.get('OPENAI_BASE_URL', 'https://api.openai.com/v1')})")
        if os.environ.get("ANTHROPIC_API_KEY"):
            providers.append("anthropic")
        if os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"):
            providers.append("gemini")
        db = common.db_url().split("://", 1)[0]
        lines = [
            "",
            "Switchyard is running.",
            f'  API        http://127.0.0.1:{port}/v1  (OpenAI-compatible; model="auto" routes)',
            f"  API key    {rel}" + ("  (created now)" if created_key else ""),
            f"  Health     http://127.0.0.1:{port}/readyz   metrics: http://127.0.0.1:{port}/metrics",
            f"  NATS       {redact(self.nats_url)}"
            + (
                f"  (JetStream data in {_relative(self.var_dir / 'jetstream')}; users' passwords in "
                f"{_relative(self.var_dir / nats_users.AUTH_DIR)})"
                if self.nats
                else ""
            ),
            f"  Database   {db}"
            + (f" at {_relative(self.var_dir / 'switchyard.db')}" if db.startswith("sqlite") else ""),
            f"  Logs       {_relative(self.logs)}/<service>.log",
            f"  Providers  {', '.join(providers)}",
            *self._optional_lines(),
            "",
            "Try:",
            f"  curl -s http://127.0.0.1:{port}/v1/chat/completions \\",
            f'    -H "Authorization: Bearer $(cat {rel})" \\',
            "    -H 'content-type: application/json' \\",
            '    -d \'{"model":"auto","messages":[{"role":"user",'
            '"content":"What is the capital of France?"}]}\'',
            "  .venv/bin/switchyard ledger verify",
            "",
            "Ctrl-C stops everything; the next run keeps the data.",
        ]
        return "\n".join(lines)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_settings() -> None:
    """Every service's settings read from this environment, before anything starts: a bad value is the
    CLI's one line and exit 2 (`main`), not six services failing one after the other in their logs."""
    from switchyard.audit.config import AuditSettings
    from switchyard.billing.app import BillingSettings
    from switchyard.classifier.config import ClassifierSettings
    from switchyard.executor.config import ExecutorSettings
    from switchyard.executor.providers.anthropic.config import AnthropicSettings
    from switchyard.executor.providers.gemini.config import GeminiSettings
    from switchyard.executor.providers.openai.config import OpenAISettings
    from switchyard.gateway.config import GatewaySettings
    from switchyard.router.app import RouterSettings

    for settings in (
        GatewaySettings,
        ClassifierSettings,
        RouterSettings,
        ExecutorSettings,
        OpenAISettings,
        AnthropicSettings,
        GeminiSettings,
        BillingSettings,
        AuditSettings,
    ):
        settings()
    if os.environ.get("SWITCHYARD_SIEM_URL"):
        from switchyard.audit.export.config import ExportSettings

        ExportSettings()


def run(settings: StackSettings) -> int:
    stack = Stack(settings)
    stack.logs.mkdir(parents=True, exist_ok=True)
    os.environ["SWITCHYARD_VAR_DIR"] = str(stack.var_dir)
    embedded_sizes()
    common = CommonSettings()
    check_settings()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(
            f"starting nats-server, migrating the database, starting {len(START_ORDER)} services...",
            flush=True,
        )
        # the database first: the bus's `integrator` is scoped to its dev organisation
        created = asyncio.run(stack.prepare_database(common))
        stack.start_nats()
        if stack.nats is not None:
            asyncio.run(stack.provision_bus())
        stack.start_services()
        stack.wait_ready(lambda: stopping)
        print(stack.banner(created, common), flush=True)
        while not stopping:
            stack.supervise()
            time.sleep(0.5)
        print("\nstopping...", flush=True)
        return 0
    finally:
        stack.stop()
        print("stopped.", flush=True)
