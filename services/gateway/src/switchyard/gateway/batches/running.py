"""One batch run by the replica that holds its lease: validate the input file, submit its lines as tasks
(at most `concurrency` at a time), follow them to their results, then write the output and error files.

The input file is read as it is needed, never held: validating keeps only what the check needs, running
reads the requests as slots free up (a chunk of the file ahead), finishing reads them again, 64 at a time.
So the batch needs its file until it ends: one deleted before then fails the batch (`file_not_found` in
its `errors`), the tasks still running cancelled, those a dead runner left too (`_cancel_unread`). (One
past its expiry is kept while the batch runs.)

Everything it does can be done again: a line's task id is derived from the batch and the line, so a
runner that takes over after another died finds the tasks already submitted (the task store) and the
lines already refused (`e.` keys), and submits only the rest; it starts from the record's `done_below`,
the first line whose result was not yet known when the last progress was written."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

import nats.errors
from nats.aio.msg import Msg

from switchyard.common import bus_guard, legacy_subjects, subjects, vectors
from switchyard.common.background import cancel_all
from switchyard.common.events import TaskCompleted
from switchyard.gateway import bounds, serving
from switchyard.gateway.batches import inputs, lines, render
from switchyard.gateway.batches.lease import LeasedRun, _with
from switchyard.gateway.batches.models import BatchError, BatchErrors, BatchRecord, LineError, RequestCounts
from switchyard.gateway.batches.results import Results
from switchyard.gateway.errors import APIError, RateLimited, ServiceUnavailable
from switchyard.gateway.files.store import new_file_id
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.taskapi import idempotency
from switchyard.gateway.taskapi.models import TERMINAL as TASK_TERMINAL
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.tasks import SETTLE_WAIT_S

log = logging.getLogger(__name__)
MAX_WAIT_S = 30.0  # a line refused for a rate limit waits at most this long before it is tried again
# Lines in a row never submitted after which no later one was (`_cancel_unread`): more than any runner's
# SWITCHYARD_BATCH_CONCURRENCY (8 by default) leaves unsubmitted between those it submitted
UNREAD_GAP = 64
REVOKED = LineError(
    status=401,
    type="authentication_error",
    code="invalid_api_key",
    message="the API key that created this batch is no longer valid (revoked or expired, or its user "
    "disabled): this request was not run",
)


class BatchRun(LeasedRun):
    async def run(self) -> None:
        keeper = asyncio.create_task(self._keep(), name=f"batch-lease-{self.batch_id}")
        try:
            if await self._expired_unvalidated():
                return
            await self._refresh_principal()
            if self.record.batch.status == "validating" and not await self._validate():
                return
            self._heard(self.record)
            batch = self.record.batch  # one cancelled before it was validated has no task to follow
            if batch.status == "in_progress" or (batch.status == "cancelling" and batch.in_progress_at):
                await self._run_lines()
            if not self.halting:
                await self._finish()
        finally:
            await cancel_all({keeper})

    async def _expired_unvalidated(self) -> bool:
        """A batch still validating past its window (its models could not be checked all day: no provider
        announced) is `expired`, not tried again forever, counted among its organisation's unfinished."""
        now = int(time.time())
        if self.record.batch.status != "validating" or now < self.record.batch.expires_at:
            return False
        record = await self._write(
            lambda r: _with(r, status="expired", expired_at=now) if r.batch.status == "validating" else None
        )
        if record.batch.status != "expired":
            return False
        await self.store.finished(self.batch_id, tenant_id=record.tenant_id)
        return True

    # -- validation --------------------------------------------------------------------------------

    async def _validate(self) -> bool:
        """The input file's lines checked, then their models: the batch runs (True) or fails (False)."""
        checked = await inputs.checked(self.gw.files, self.gw.settings, self.record)
        await lines.check_models(checked, check=self._check_model)
        return await self._validated(checked)

    def _requests(self, start: int) -> AsyncGenerator[lines.Line, None]:
        max_body_bytes = self.gw.settings.max_body_bytes
        return inputs.requests(self.gw.files, self.record, start=start, max_body_bytes=max_body_bytes)

    async def _check_model(self, ask: lines.Ask) -> str:
        """The catalogue's check of a line's model, with the creating key's allow-list (its policy's
        `models`): a model the key may not use fails the batch here, its lines listed (403
        `model_not_allowed`), rather than each line failing so as it runs."""
        allowed = None if self.principal is None else allowed_models(self.principal.key_policy)
        if self.record.batch.endpoint == lines.EMBEDDINGS:
            return await self.gw.catalog.check_embedding(
                ask.model, inputs=ask.inputs, dimensions=ask.dimensions, allowed=allowed
            )
        return await self.gw.catalog.check(ask.model, allowed=allowed)

    async def _validated(self, checked: lines.Checked) -> bool:
        """A batch being validated runs, or fails with its file's problems listed. False: failed."""
        now = int(time.time())
        errors = [BatchError(code=c, message=m, param=p, line=n) for c, m, p, n in checked.errors]

        def validated(r: BatchRecord) -> BatchRecord | None:
            if r.batch.status != "validating":
                return None  # cancelled meanwhile: nothing runs
            if errors:
                failed = {"status": "failed", "failed_at": now, "errors": BatchErrors(data=errors)}
                return _with(r, **failed)
            counts = RequestCounts(total=checked.count)
            return _with(r, status="in_progress", in_progress_at=now, request_counts=counts)

        record = await self._write(validated)
        if record.batch.status == "failed":
            await self.store.finished(self.batch_id, tenant_id=self.record.tenant_id)
            return False
        return True

    # -- running the lines ---------------------------------------------------------------------------

    async def _run_lines(self) -> None:
        """Each line from `done_below` on, `concurrency` at a time, read from the file as a slot frees up
        (the requests held are those in flight and the next one). Once the batch ends (cancelled, expired,
        its file gone) no line is submitted any more, and the tasks still running are cancelled."""
        slots = asyncio.Semaphore(self.knobs.concurrency)
        running: set[asyncio.Task[None]] = set()
        unread = self.record.done_below  # the first line this run has not taken up

        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()

        try:
            async with aclosing(self._requests(unread)) as requests:
                async for line in requests:
                    await slots.acquire()
                    if self.halting or self.gone is not None:
                        slots.release()
                        break
                    unread = line.index + 1
                    task = asyncio.create_task(self._line(line))
                    running.add(task)
                    task.add_done_callback(done)
        except inputs.GONE as exc:
            self._input_gone(exc)
        except (nats.errors.Error, TimeoutError) as exc:  # the bus, briefly: the run is taken up again
            log.warning(
                "batch %s: its input file not read (%r); taken up again at a later scan", self.batch_id, exc
            )
            self.halt()
        await asyncio.gather(*running, return_exceptions=True)
        if self.gone is not None and not self.halting:
            await self._cancel_unread(unread)

    async def _cancel_unread(self, start: int) -> None:
        """The input file is gone: the tasks of lines this run never read (from `start` on) that a runner
        before it submitted (it died, or lost its lease) are cancelled, as this run's own are. Without the
        file they are found by their derived ids. A runner submits lines in file order with at most its
        concurrency in flight, so past UNREAD_GAP lines in a row that are neither a task nor a refusal, no
        later line was submitted."""
        total, gap, index = self.record.batch.request_counts.total, 0, start
        owner = self._owner()
        while index < total and gap < max(UNREAD_GAP, self.knobs.concurrency):
            task_id = render.task_id(self.record.tenant_id, self.batch_id, index)
            try:
                state = await self.gw.runs.store.get(task_id)
                if state is not None and state.status not in TASK_TERMINAL:
                    await self.gw.runs.cancel(principal=owner, task_id=task_id)
                elif state is None and await self.store.line_error(self.batch_id, index) is None:
                    gap += 1
                    index += 1
                    continue
            except (nats.errors.Error, TimeoutError) as exc:  # left to run out: they time out
                log.warning("batch %s: line %d's task not cancelled (%r)", self.batch_id, index, exc)
            gap = 0
            index += 1

    async def _line(self, line: lines.Line) -> None:
        task_id = render.task_id(self.record.tenant_id, self.batch_id, line.index)
        heard = asyncio.Event()  # its result event was published: read its state now, not at the next poll

        async def on_result(msg: Msg) -> None:
            if not bus_guard.refused(msg, subscription=bus_guard.RESULTS):
                heard.set()

        # Listening before it is submitted, so the result cannot slip past; the poll still reads it when
        # it came before (a task submitted by the runner before this one).
        listening = await legacy_subjects.listen(
            self.gw.nc,
            subjects.result_subject(self.record.tenant_id, task_id),
            on_result,
            previous=self.gw.settings.legacy_subjects,
            tenant_id=self.record.tenant_id,
        )
        try:
            while True:
                try:
                    state = await self._follow(line, task_id, heard)
                    break
                except Exception as exc:  # the bus or a bucket, briefly: following again is safe
                    log.warning("batch %s: line %d: %r; following it again", self.batch_id, line.index, exc)
                    if self.stopping:
                        return
                    await self._pause(self.knobs.poll_s)
        finally:
            await listening.unsubscribe()
        if state is not None and state.status == "completed":
            await self._keep_vectors(task_id)
        if state is not None and (state.status != "cancelled" or self.ending is None):
            # a task a member cancelled (the task API) while the batch runs: the line's failure
            self.outcomes[line.index] = "completed" if state.status == "completed" else "failed"

    async def _keep_vectors(self, task_id: str) -> None:
        """An embedding line's vectors, when they are in the object store that expires them in minutes:
        copied to the batch's (`batches.vectors`) before the line counts as done. One that cannot be read
        any more is told in the error file (`bad_response`) when the batch finishes."""
        kept = self.store.vectors
        if kept is None or self.record.batch.endpoint != lines.EMBEDDINGS:
            return
        try:
            done = await self.gw.runs.store.stored_outcome(self.record.tenant_id, task_id)
            if isinstance(done, TaskCompleted) and done.embedding is not None:
                await kept.keep(done.embedding, tenant_id=self.record.tenant_id)
        except (vectors.VectorsUnreadable, nats.errors.Error, TimeoutError) as exc:
            log.warning("batch %s: the vectors of %s not kept: %r", self.batch_id, task_id, exc)

    async def _follow(self, line: lines.Line, task_id: str, heard: asyncio.Event) -> TaskState | None:
        """The line's task once it ended (cancelled, if the batch ended first); None when it is not a task
        (refused, or not submitted before the batch stopped) or this run stopped following it."""
        state = await self.gw.runs.store.get(task_id)
        if state is None:
            if await self.store.line_error(self.batch_id, line.index) is not None:
                self.outcomes[line.index] = "failed"
                return None
            state = await self._submit(line, task_id)
        while state is not None and state.status not in TASK_TERMINAL:
            if self.halting:
                return None
            if self.ending is not None:
                return await self._cancelled(task_id, heard)
            await self._pause(self.knobs.poll_s, heard)
            heard.clear()
            state = await self.gw.runs.get(principal=self._owner(), task_id=task_id)
        return state

    async def _cancelled(self, task_id: str, heard: asyncio.Event) -> TaskState:
        """The line's task cancelled as its batch ended. An answer its executor made before the
        cancellation reached it is billed in full, so it is the line's (`Results.of` reads it): it is
        waited for up to SETTLE_WAIT_S (the task API's wait to settle a cancelled task), so that the files
        are not written just before it comes."""
        state = await self.gw.runs.cancel(principal=self._owner(), task_id=task_id)
        if state.status == "cancelled":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), SETTLE_WAIT_S)
        return state

    async def _submit(self, line: lines.Line, task_id: str) -> TaskState | None:
        """The line's task, submitted as POST /v1/tasks submits one (low priority); None when it was not
        (refused: its error kept; or the batch stopped first). A rate limit or a busy limiter waits."""
        endpoint = self.record.batch.endpoint
        while not self.stopping:
            await self._refresh_principal()
            if self.principal is None:
                await self._refused(line, REVOKED)
                return None
            try:
                parse = functools.partial(
                    lines.parse,
                    line,
                    endpoint,
                    max_prompt_chars=self.gw.settings.max_prompt_chars,
                    max_body_bytes=self.gw.settings.max_body_bytes,
                    aliases=self.gw.catalog.policy.aliases,
                )
                parsed = await bounds.read_off_loop(parse, size=len(line.body))
                return await serving.submit_parsed(
                    self.gw,
                    self.principal,
                    parsed,
                    digest=idempotency.BodyDigest.sealed(
                        self.gw.body_key, hashlib.sha256(line.body).hexdigest()
                    ),
                    key=render.idempotency_key(self.batch_id, line.index),
                    priority="low",
                    where={"request_id": render.request_id(task_id), "endpoint": endpoint},
                    task_id=task_id,
                    batch=True,
                    size=len(line.body),
                )
            except APIError as exc:
                if not _waits(exc):
                    await self._refused(line, render.line_error(exc))
                    return None
                await self._pause(_wait_s(exc))
        return None

    async def _refused(self, line: lines.Line, error: LineError) -> None:
        await self.store.keep_line_error(self.batch_id, line.index, error)
        self.outcomes[line.index] = "failed"

    # -- finishing -------------------------------------------------------------------------------------

    async def _finish(self) -> None:
        """Writes the output and error files from every line's result, then the batch's end."""
        if self.gone is not None:
            await self._failed(self.gone)
            return
        final = self.ending or ("cancelled" if self.record.batch.status == "cancelling" else "completed")
        now = int(time.time())
        if final == "completed":
            # a cancellation that came as the last lines ended: it ends as cancelled (nothing is left)
            finalizing = await self._write(
                lambda r: (
                    None
                    if r.batch.status == "cancelling"
                    else _with(r, status="finalizing", finalizing_at=now)
                )
            )
            if finalizing.batch.status == "cancelling":
                final = "cancelled"
        await self._write(  # the files' ids, before they are written (see `results_files`)
            lambda r: (
                None
                if r.results_files
                else r.model_copy(update={"results_files": [new_file_id(), new_file_id()]})
            )
        )
        results = Results(self.gw, self.store, self.record, self.principal or self._owner())
        try:
            async with aclosing(self._requests(0)) as requests:
                out, err, counts = await results.write(requests, final=final)
        except inputs.GONE as exc:
            await self._failed(self._input_gone(exc))
            return
        ended = {"completed": "completed_at", "cancelled": "cancelled_at", "expired": "expired_at"}[final]
        await self._write(
            lambda r: _with(
                r,
                status=final,
                request_counts=counts,
                usage=results.usage,
                output_file_id=out.id if out else None,
                error_file_id=err.id if err else None,
                **{ended: int(time.time())},
            )
        )
        await self.store.finished(self.batch_id, tenant_id=self.record.tenant_id)
        # Only now: a replica that takes over a batch not marked ended yet writes its files again from them.
        if self.store.vectors is not None and results.kept:
            await self.store.vectors.forget(results.kept)

    async def _failed(self, message: str) -> None:
        """The batch ends `failed`, the reason in its `errors`, its counts as they stand."""
        now = int(time.time())
        counts = self.record.batch.request_counts  # this run's, or as the last one left them
        counts = self._progress(counts.total)[2] if self.outcomes else counts
        error = BatchError(code="file_not_found", message=message, param="input_file_id")
        failed = {"status": "failed", "failed_at": now, "errors": BatchErrors(data=[error])}
        await self._write(lambda r: _with(r, request_counts=counts, **failed))
        await self.store.finished(self.batch_id, tenant_id=self.record.tenant_id)


def _waits(exc: APIError) -> bool:
    """A refusal that passes (a rate limit, the concurrency cap, a busy limiter, the line's key being
    claimed by another runner's submission): the line waits. A budget
    refusal, or a request larger than a whole limit, is the line's failure."""
    if isinstance(exc, RateLimited):
        return exc.code != "budget_exceeded" and exc.retry is not False
    if exc.code == "idempotency_key_in_use":  # another runner is submitting the line (a takeover)
        return True
    return isinstance(exc, ServiceUnavailable)


def _wait_s(exc: APIError) -> float:
    try:
        wait = float(exc.headers.get("retry-after") or exc.headers.get("Retry-After") or 1.0)
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.2), MAX_WAIT_S)
