"""The process ends itself when its event loop is wedged (SWITCHYARD_LOOP_WATCHDOG_S), for orchestrators
that restart a container only when its process exits (docker compose's `restart:`; Docker restarts no
container for being unhealthy). Kubernetes needs none: its liveness probe (`healthcheck --liveness`, the
gateway's /healthz) restarts the container.

A task on the loop notes the time every second; a thread of its own (which a wedged loop does not stop)
looks every second, and past `stall_s` without a note writes one line and exits the process with code 70
at once: running handlers' messages were not acknowledged, so JetStream delivers them again to a replica
that runs (as after a kill)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

EXIT_CODE = 70  # EX_SOFTWARE: restart policies that restart on failure do
TICK_S = 1.0


class LoopWatchdog:
    def __init__(self, stall_s: float, *, name: str) -> None:
        self.stall_s = stall_s
        self.name = name
        self._noted = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        """Called on the running loop it watches."""
        self._noted = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._note())
        threading.Thread(target=self._watch, name=f"{self.name}-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()

    async def _note(self) -> None:
        while True:
            self._noted = time.monotonic()
            await asyncio.sleep(TICK_S)

    def _watch(self) -> None:
        while not self._stopped.wait(TICK_S):
            stalled = time.monotonic() - self._noted
            if stalled > self.stall_s:
                message = (
                    f"{self.name}: the event loop has not run for {stalled:.0f} s (more than "
                    f"SWITCHYARD_LOOP_WATCHDOG_S={self.stall_s:g}): exiting so the container is restarted"
                )
                # straight to stderr: the logging handler's lock may be held by the wedged loop's thread
                print(message, file=sys.stderr, flush=True)
                os._exit(EXIT_CODE)
