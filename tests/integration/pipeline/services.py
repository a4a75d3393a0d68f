"""Services as real OS processes for pipeline tests: start several (replicas too), wait until each says
it is ready, stop them by PID (SIGTERM, or SIGKILL to simulate a crash)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

READY = " ready (nats "


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def ready(self) -> bool:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
        return self.log.exists() and READY in self.log.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> None:
        """kill -9: no shutdown, no acks, in-flight work abandoned."""
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


@dataclass
class Fleet:
    folder: Path
    base_env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(self, module: str, *, name: str, env: dict[str, str] | None = None) -> Proc:
        log = self.folder / f"{name}.log"
        full = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "SWITCHYARD_METRICS_PORT": "0",
            "SWITCHYARD_INSTANCE": name,
            **self.base_env,
            **(env or {}),
        }
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", module], env=full, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def wait_ready(self, *procs: Proc, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(procs or self.procs)
        while waiting:
            waiting = [p for p in waiting if not p.ready()]
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not ready: {[p.name for p in waiting]}\n{waiting[0].tail()}")
            time.sleep(0.1)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
