"""Faults outside the services: a 3-node JetStream cluster on loopback whose stream leader can be killed
(kill -9) and restarted, and a PostgreSQL cluster restarted under load."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from switchyard.cli.processes import (
    MAX_PAYLOAD,
    POSTGRES_BIN,
    PostgresCluster,
    free_port,
    nats_server_binary,
    port_open,
)


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    monitor_port: int
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.config.with_suffix(".log"), "ab") as log:
            self.proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
            return httpx.get(url, timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class NatsCluster:
    folder: Path
    nodes: list[Node] = field(default_factory=list)

    def start(self, size: int = 3, timeout: float = 30.0) -> NatsCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        routes = ", ".join(f"nats-route://127.0.0.1:{c}" for _, c, _ in ports)
        for i, (port, cluster_port, monitor_port) in enumerate(ports):
            name = f"n{i + 1}"
            config = self.folder / f"{name}.conf"
            config.write_text(
                f"server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n"
                f"max_payload: {MAX_PAYLOAD}\n"
                f'jetstream {{ store_dir: "{self.folder / name}" }}\n'
                f"cluster {{ name: chaos, listen: 127.0.0.1:{cluster_port}, routes: [{routes}] }}\n"
            )
            self.nodes.append(Node(name, port, cluster_port, monitor_port, config))
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(n.healthy() for n in self.nodes if n.proc and n.proc.poll() is None):
            if time.monotonic() > deadline:
                raise TimeoutError("the NATS cluster did not become healthy")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def stream_leader(self, stream: str) -> str:
        """The name of the node leading `stream` (from a live node's monitoring endpoint)."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                jsz = httpx.get(
                    f"http://127.0.0.1:{node.monitor_port}/jsz",
                    params={"accounts": "true", "streams": "true"},
                    timeout=2.0,
                ).json()
            except httpx.HTTPError:
                continue
            for account in jsz.get("account_details", []):
                for detail in account.get("stream_detail", []):
                    if detail["name"] == stream and detail.get("cluster", {}).get("leader"):
                        return str(detail["cluster"]["leader"])
        raise LookupError(f"no leader known for {stream}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def restart_postgres(cluster: PostgresCluster) -> float:
    """Stops PostgreSQL at once (`-m immediate`, like a crash: every connection drops) and starts it again;
    returns the seconds it was down."""
    pg_ctl = str(POSTGRES_BIN / "pg_ctl")
    runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    started = time.monotonic()
    subprocess.run(
        [*runner, pg_ctl, "-D", str(cluster.data_dir), "-w", "-m", "immediate", "stop"],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {cluster.base_dir} -c fsync=off"
    subprocess.run(
        [
            *runner,
            pg_ctl,
            "-D",
            str(cluster.data_dir),
            "-w",
            "-l",
            str(cluster.base_dir / "postgres.log"),
            "-o",
            opts,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    down = time.monotonic() - started
    if not port_open(cluster.port):  # seen once: a restart that pg_ctl reported but nobody could reach
        log = (cluster.base_dir / "postgres.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL restarted but port {cluster.port} is closed:\n{log}")
    return down
