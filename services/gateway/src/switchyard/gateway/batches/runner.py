"""The batches every gateway replica takes up: each replica looks for active batches whose runner's lease
is free or has lapsed (its replica died) and claims them by compare-and-set, at most `max_running` at a
time; the claim's winner runs the batch (`running.BatchRun`) and renews the lease while it does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from switchyard.common.background import cancel, cancel_all
from switchyard.common.transient import Failures
from switchyard.gateway.batches.lease import Knobs, Lost
from switchyard.gateway.batches.models import TERMINAL, BatchRecord, Runner
from switchyard.gateway.batches.running import BatchRun
from switchyard.gateway.batches.store import BatchStore
from switchyard.gateway.errors import ServiceUnavailable
from switchyard.gateway.state import Gateway

log = logging.getLogger(__name__)
STOP_WAIT_S = 2.0  # a stopping replica's runs finish the step they are in this long, then are cut


class BatchRunner:
    def __init__(self, gw: Gateway, store: BatchStore, knobs: Knobs, *, max_running: int, scan_s: float):
        self.gw = gw
        self.store = store
        self.knobs = knobs
        self._max_running = max_running
        self._scan_s = scan_s
        self._runs: dict[str, tuple[BatchRun, asyncio.Task[None]]] = {}
        self._poked = asyncio.Event()
        self._scanning: asyncio.Task[None] | None = None
        self._scan_failures = Failures(log)  # a timeout while the bucket's stream elects its leader: a line

    def start(self) -> None:
        self._scanning = asyncio.create_task(self._scan_loop(), name="batch-runner")

    def poke(self) -> None:
        """A batch was created or cancelled here: look now rather than at the next scan."""
        self._poked.set()

    async def stop(self) -> None:
        """Stops the runs (their tasks run on) and gives their leases up, so another replica takes them
        over at once."""
        await cancel(self._scanning)
        runs = list(self._runs.values())
        for run, _ in runs:
            run.halt()
        tasks = [task for _, task in runs]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            await cancel_all(late)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _scan_loop(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception as exc:
                self._scan_failures.failed(exc, "batch runner: scan failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._scan_s):
                    await self._poked.wait()
            self._poked.clear()

    async def scan(self) -> None:
        """Takes up the active batches whose lease is free, oldest first, but fairly: an organisation that
        already runs its share of this replica's batches (half, at least one) is passed over while any
        other organisation's batch waits, and gets the runs left over after them (one organisation's many
        batches do not hold every run while another's wait a day)."""
        passed_over: list[str] = []
        for batch_id in await self.store.active():
            if len(self._runs) >= self._max_running:
                return
            if not await self._take(batch_id, fair=True):
                passed_over.append(batch_id)
        for batch_id in passed_over:
            if len(self._runs) >= self._max_running:
                return
            await self._take(batch_id, fair=False)

    async def _take(self, batch_id: str, *, fair: bool) -> bool:
        """Claims the batch and runs it if its lease is free; False when it was passed over (`fair`: its
        organisation runs its share here)."""
        if batch_id in self._runs:
            return True
        passed = False

        def claim(record: BatchRecord) -> BatchRecord | None:
            nonlocal passed
            passed = fair and self._runs_of(record.tenant_id) >= self._share
            return None if passed else self._claim(record)

        record = await self.store.change(batch_id, claim)
        if record is None or record.batch.status in TERMINAL:
            await self.store.finished(batch_id, tenant_id=record.tenant_id if record else None)
            return True
        if passed:
            return False
        if record.runner is not None and record.runner.owner == self.knobs.replica:
            run = BatchRun(self.gw, self.store, self.knobs, record)
            task = asyncio.create_task(self._run(run), name=f"batch-{batch_id}")
            self._runs[batch_id] = (run, task)
        return True

    @property
    def _share(self) -> int:
        return max(1, self._max_running // 2)

    def _runs_of(self, tenant_id: str) -> int:
        return sum(1 for run, _ in self._runs.values() if run.record.tenant_id == tenant_id)

    def _claim(self, record: BatchRecord) -> BatchRecord | None:
        now = time.time()
        held = record.runner
        if record.batch.status in TERMINAL or (held is not None and held.until > now):
            return None
        if held is not None:
            log.info("batch %s: the lease of %s lapsed; taken over", record.batch.id, held.owner)
        runner = Runner(owner=self.knobs.replica, until=now + self.knobs.lease_s)
        return record.model_copy(update={"runner": runner})

    async def _run(self, run: BatchRun) -> None:
        try:
            await run.run()
        except Lost:
            log.warning("batch %s: lost its lease to another replica", run.batch_id)
        except ServiceUnavailable as exc:  # no provider announced yet, say: its models cannot be checked
            log.warning("batch %s: put off (%s); taken up again at a later scan", run.batch_id, exc.message)
        except Exception:
            log.exception("batch %s: run failed; taken up again at a later scan", run.batch_id)
        finally:
            self._runs.pop(run.batch_id, None)
            with contextlib.suppress(Exception):
                await run.release()
