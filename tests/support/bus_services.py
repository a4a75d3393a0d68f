"""A bus service as its own process, ready once it answers its ping; stopped (or killed) by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats

from switchyard.common import subjects
from tests.support import event_ids


class BusService:
    def __init__(
        self,
        name: str,
        *,
        env: dict[str, str],
        log_path: Path,
        module: str | None = None,
        ping_url: str | None = None,
    ) -> None:
        self.name = name
        # who asks for its ping (a bus with users: `operator`'s URL); else the service's own URL
        self.ping_url = ping_url or env["SWITCHYARD_NATS_URL"]
        self.module = module or f"switchyard.{name}"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **event_ids.with_secret(env)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 60.0) -> BusService:
        """Started and answering its ping; a process that never gets there is stopped before this raises,
        so a failed start leaves nothing running past the test."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            await self._answering(self.proc, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    async def _answering(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        nc = await nats.connect(self.ping_url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if proc.poll() is not None:
                    tail = self.log_path.read_text()[-3000:]
                    raise RuntimeError(f"{self.name} exited with {proc.returncode}:\n{tail}")
                try:
                    await nc.request(subjects.ping_subject(self.name), b"", timeout=0.5)
                    return
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.name} did not answer its ping") from None
                    await asyncio.sleep(0.1)
        finally:
            await nc.close()

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, transactions in flight are lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def running(self) -> Iterator[subprocess.Popen[bytes]]:
        """For a synchronous fixture (`yield from service.running()`): started, its process, then stopped."""
        asyncio.run(self.start())
        try:
            assert self.proc is not None
            yield self.proc
        finally:
            self.stop()
