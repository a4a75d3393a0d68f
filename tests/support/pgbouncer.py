"""A real PgBouncer (Debian's) in transaction mode in front of a test cluster, as docs/operations/scaling.md
suggests for many replicas: each transaction may run on another server connection."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from switchyard.cli.processes import PostgresCluster, free_port, port_open

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    def __init__(self, folder: Path, cluster: PostgresCluster, *, database: str) -> None:
        self.folder = folder
        self.cluster = cluster
        self.database = database
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return Path(PGBOUNCER).exists()

    def start(self, timeout: float = 10.0) -> PgBouncer:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "users.txt").write_text('"postgres" ""\n')
        (self.folder / "pgbouncer.ini").write_text(
            f"[databases]\n{self.database} = host=127.0.0.1 port={self.cluster.port} dbname={self.database}\n"
            "[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\nauth_type = trust\nauth_file = {self.folder / 'users.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\nunix_socket_dir =\n"
        )
        cmd = [PGBOUNCER, str(self.folder / "pgbouncer.ini")]
        if os.geteuid() == 0:  # it refuses to run as root
            shutil.chown(self.folder, "postgres", "postgres")
            for name in ("users.txt", "pgbouncer.ini"):
                shutil.chown(self.folder / name, "postgres", "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        log = (self.folder / "pgbouncer.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start: {(self.folder / 'pgbouncer.log').read_text()}")
            time.sleep(0.05)
        return self

    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
