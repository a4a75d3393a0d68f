"""Start a service as its own process for a test and wait until it answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import event_ids


@contextmanager
def service_process(
    module: str, *, env: dict[str, str], log_path: Path, ready_url: str | None = None, timeout: float = 60.0
) -> Iterator[subprocess.Popen[bytes]]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **event_ids.with_secret(env)}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        if ready_url is not None:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{module} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                    )
                try:
                    httpx.get(ready_url, timeout=1.0)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{module} not answering at {ready_url}") from None
                    time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
