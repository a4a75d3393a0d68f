"""Docker restarts a container only when its process exits, never for being unhealthy: a replica whose
event loop is wedged (a handler stuck in a blocking call) stayed up and useless under docker compose,
where Kubernetes' liveness probe would have restarted it. With SWITCHYARD_LOOP_WATCHDOG_S the process
exits by itself (code 70), so compose's `restart:` brings it back; a loop that runs is left alone."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from switchyard.common.watchdog import EXIT_CODE

pytestmark = pytest.mark.unit

PROGRAM = """
import asyncio, sys, time
from switchyard.common.watchdog import LoopWatchdog

async def main(wedge: bool) -> None:
    dog = LoopWatchdog(1.5, name="billing")
    dog.start()
    await asyncio.sleep(0.2)
    if wedge:
        time.sleep(30)  # a handler blocking the loop
    else:
        await asyncio.sleep(3.5)  # busy but running
    dog.stop()
    print("ended", flush=True)

asyncio.run(main(sys.argv[1] == "wedge"))
"""


def _run(mode: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60, check=False
    )
    return done, time.monotonic() - started


def test_a_wedged_loop_ends_its_process_and_a_running_one_does_not() -> None:
    wedged, took = _run("wedge")
    assert wedged.returncode == EXIT_CODE, wedged.stderr
    assert took < 10 and "ended" not in wedged.stdout
    assert "billing: the event loop has not run for 2 s" in wedged.stderr
    assert "SWITCHYARD_LOOP_WATCHDOG_S=1.5" in wedged.stderr
    running, _ = _run("run")
    assert running.returncode == 0 and "ended" in running.stdout, running.stderr
