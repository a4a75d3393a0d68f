"""Submitting a task on the bus and waiting for its result (or its streamed chunks).

The gateway subscribes to the task's result subject (and chunk subject) on its own connection BEFORE it
publishes the task: NATS processes one connection's protocol in order, so the result cannot slip past.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from switchyard.common import bus_guard, legacy_subjects, results, subjects
from switchyard.common.background import Background
from switchyard.common.bus import EventPublisher
from switchyard.common.envelope import MAX_EVENT_BYTES, decode, written
from switchyard.common.errors import InvalidEvent
from switchyard.common.events import (
    ChatRequest,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    TaskTimedOut,
)
from switchyard.common.streaming import Chunk, decode_chunk
from switchyard.gateway import metrics
from switchyard.gateway.bounds import READ_INLINE_BYTES, too_deep
from switchyard.gateway.errors import BusPayloadExceeded
from switchyard.gateway.stopping import Stop

log = logging.getLogger(__name__)

Outcome = TaskCompleted | TaskFailed
Settle = Callable[[Outcome | None], Awaitable[None]]
# How long the outcome of an abandoned task is waited for: the cancellation cuts a running provider call
# within milliseconds; a task not started yet is skipped when it gets there, and none of it was charged.
SETTLE_WAIT_S = 5.0
# Of one bus message, what a task's own event may not take: the pipeline adds to it on its way (TaskRouted
# carries the task with its classification and routing decision: a few KB), NATS headers, and a dead-letter
# copy's headers. The rest of `max_payload` is the task's.
EVENT_RESERVE_BYTES = 64 * 1024


class TimedOut(Exception):
    """The task's wait ran out; the message says which bound (`TaskClient.stream`)."""


class AckLost(nats.errors.TimeoutError):
    """A task's publishing had no ack through its attempts, nor a last one (`EventPublisher.confirm`):
    the stream may hold it (stored, the answer lost: a leader elected, a node lost), so it may run and be
    charged. `waiting`: the future of its result, still listened for; `event_id`: the id it went out
    under, which a retry publishes it again under within the duplicate window (`keyed`)."""

    def __init__(self, waiting: asyncio.Future[Outcome], event_id: str) -> None:
        super().__init__()
        self.waiting = waiting
        self.event_id = event_id


class Stopped(Exception):
    """The gateway's stop is ending the requests still running (`stopping.Stop`): a stream ends here, with
    its face's error event saying so."""

    code = "gateway_stopping"
    message = (
        "the gateway stopped (a restart) before this answer ended; its task was cancelled: "
        "send the request again"
    )


class TaskClient:
    def __init__(self, nc: Client, publisher: EventPublisher, *, legacy_subjects: bool = False) -> None:
        """`legacy_subjects`: a task's result and chunks are heard on the subjects of the release before
        tenant tokens too (its executors publish there during a rolling upgrade: legacy_subjects.py)."""
        self._nc = nc
        self._publisher = publisher
        self._legacy = legacy_subjects
        self._abandoning = Background()
        # What `check_fits` wrote of each task not published yet, by the task's id() while it lives: a task
        # is written once, on a worker thread when large (`check_fits_off_loop`), and published as written
        # (nothing changes a task between its check and its publishing)
        self._written: dict[int, bytes] = {}

    def max_task_bytes(self) -> int:
        """The largest task event the bus carries: the server's `max_payload` (as it told this connection)
        or the envelope's cap, whichever is smaller, less `EVENT_RESERVE_BYTES`."""
        return min(self._nc.max_payload, MAX_EVENT_BYTES) - EVENT_RESERVE_BYTES

    def check_fits(self, task: TaskSubmitted) -> None:
        """413 `bus_max_payload_exceeded` for a task the bus cannot carry through the pipeline. Checked
        before anything is subscribed or published: published, such a task would be refused by the
        client library (larger than `max_payload`) or dead-lettered by the first consumer, and its
        request would wait for its timeout. What it writes is kept for the task's publishing."""
        if id(task) not in self._written:
            self._keep(task, self._write(task))

    async def check_fits_off_loop(self, task: TaskSubmitted, *, size: int) -> None:
        """`check_fits` on a worker thread for the task of a body of `size` bytes past READ_INLINE_BYTES:
        writing the task of a body of the largest size the limits take (100,000 turns and calls) held the
        event loop ~0.1-0.3 s, as long again for its publishing (bench/loop_lag.py)."""
        if size <= READ_INLINE_BYTES or id(task) in self._written:
            self.check_fits(task)
            return
        self._keep(task, await asyncio.to_thread(self._write, task))

    def _write(self, task: TaskSubmitted) -> bytes:
        try:
            data = written(task, within=1)  # as TaskClassified and TaskRouted carry it
        except (ValueError, orjson.JSONEncodeError) as exc:  # pydantic's and orjson's serializers stop at
            raise too_deep(None, exc) from None  # ~255 levels: a body nested that deep
        limit = self.max_task_bytes()
        if len(data) > limit:
            raise BusPayloadExceeded(
                f"The request is {len(data)} bytes as a task on the message bus, which carries at most "
                f"{limit} bytes per task (the bus's max_payload of {self._nc.max_payload} bytes, less "
                f"{EVENT_RESERVE_BYTES} for what the pipeline adds); SWITCHYARD_MAX_BODY_BYTES should be "
                "below that. Send less: fewer or smaller images, or a compacted conversation"
            )
        return data

    def _keep(self, task: TaskSubmitted, data: bytes) -> None:
        key = id(task)
        self._written[key] = data
        weakref.finalize(task, self._written.pop, key, None)  # a task never published (refused)

    async def _submit(self, task: TaskSubmitted, *, shed: bool = False) -> None:
        await self._publisher.publish(
            task,
            event_id=self.submitted_id(task),
            tenant_id=task.tenant_id,
            event_subject=task.task_id,
            data=self._written.pop(id(task), None),
        )
        if shed:
            _shed(task)

    async def run(self, task: TaskSubmitted, *, timeout_s: float) -> Outcome:
        """Submits `task` and returns its result, or raises TimedOut (after recording the timeout). Once
        published, the task's messages are let go (`_shed`)."""
        self.check_fits(task)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcome] = loop.create_future()

        async def on_result(msg: Msg) -> None:
            if bus_guard.refused(msg, subscription=bus_guard.RESULTS):
                return
            outcome = _decode_result(msg.data)
            if outcome is not None and not done.done():
                done.set_result(outcome)

        sub = await self._results(task, on_result)
        started = time.monotonic()
        try:
            await self._submit(task, shed=True)
            async with asyncio.timeout(timeout_s):
                outcome = await done
        except TimeoutError:
            await self._record_timeout(task, started)
            raise TimedOut from None
        finally:
            await sub.unsubscribe()
        _count(outcome)
        return outcome

    async def start(self, task: TaskSubmitted) -> asyncio.Future[Outcome]:
        """Submits `task` and returns a future of its result without waiting for it (the task API).
        The result subscription ends when the future is done or cancelled."""
        self.check_fits(task)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcome] = loop.create_future()

        async def on_result(msg: Msg) -> None:
            if bus_guard.refused(msg, subscription=bus_guard.RESULTS):
                return
            outcome = _decode_result(msg.data)
            if outcome is not None and not done.done():
                done.set_result(outcome)

        sub = await self._results(task, on_result)
        done.add_done_callback(lambda _: loop.create_task(sub.unsubscribe()))
        done.add_done_callback(lambda _: None if done.cancelled() else _count(done.result()))
        try:
            try:
                await self._submit(task)
            except nats.errors.TimeoutError as exc:  # every ack lost: the stream may hold it all the same
                event_id = self.submitted_id(task)
                if not await self._publisher.confirm(
                    task, event_id=event_id, tenant_id=task.tenant_id, event_subject=task.task_id
                ):
                    raise AckLost(done, event_id) from exc
        except AckLost:
            raise  # its result still listened for: it may run
        except BaseException:
            done.cancel()
            raise
        return done

    async def resend(self, task: TaskSubmitted) -> None:
        """Publishes `task` again under the id it went out under (`submitted_id`): within the duplicate
        window the stream drops it if the first copy is stored, and stores it otherwise."""
        self.check_fits(task)
        await self._submit(task)

    def submitted_id(self, task: TaskSubmitted) -> str:
        return self._publisher.derived_id(task.task_id, "submitted", tenant_id=task.tenant_id)

    async def stream(
        self,
        task: TaskSubmitted,
        *,
        timeout_s: float,
        idle_s: float | None = None,
        max_s: float | None = None,
        stop: Stop | None = None,
    ) -> AsyncGenerator[Chunk | Outcome, None]:
        """Submits `task` and yields its chunks in order, then its result. Its first chunk is waited for
        `timeout_s` (a chunk naming the model begun, or a reset to the next one, is not one: it may think
        for minutes), each later one `idle_s` (default: `timeout_s`), all of them `max_s` (default: no more
        than the first and the idle bounds give), so an answer that keeps flowing is read to its end.
        Raises TimedOut (its message says which bound), or Stopped once the gateway's `stop` ends its
        requests. Once published, the task's messages are let go (`_shed`)."""
        self.check_fits(task)
        queue: asyncio.Queue[Chunk | Outcome | None] = asyncio.Queue()

        def stopping() -> None:
            queue.put_nowait(None)

        async def on_chunk(msg: Msg) -> None:
            if bus_guard.refused(msg, subscription=bus_guard.CHUNKS):
                return
            try:
                queue.put_nowait(decode_chunk(msg.data))
            except ValueError:
                log.warning("undecodable chunk for task %s", task.task_id)

        async def on_result(msg: Msg) -> None:
            if bus_guard.refused(msg, subscription=bus_guard.RESULTS):
                return
            outcome = _decode_result(msg.data)
            if outcome is not None:
                queue.put_nowait(outcome)

        chunk_sub = await legacy_subjects.listen(
            self._nc, subjects.chunk_subject(task.tenant_id, task.task_id), on_chunk, previous=self._legacy
        )
        result_sub = await self._results(task, on_result)
        started = time.monotonic()
        ends = started + max_s if max_s is not None else math.inf
        idle = timeout_s if idle_s is None else idle_s
        deadline, why = min(started + timeout_s, ends), f"The task did not finish within {timeout_s:g} s"
        flowing = False  # a chunk other than one naming a model came: the idle bound applies
        if stop is not None:
            stop.on_cut(stopping)
        try:
            await self._submit(task, shed=True)
            while True:
                if queue.empty():  # wait; a chunk already here goes on without a timer
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    # Not `wait_for`, which wraps every get in a task of its own (one per chunk).
                    async with asyncio.timeout(remaining):
                        item = await queue.get()
                else:
                    item = queue.get_nowait()
                if item is None:
                    raise Stopped
                if isinstance(item, TaskCompleted | TaskFailed):
                    _count(item)
                    yield item
                    return
                yield item
                if not flowing and isinstance(item, Chunk) and item.names_model():
                    # the executor began its model, or moved on to its next one, before any output: the
                    # first output is still waited for as long as the request waits (the task's bound
                    # may be minutes)
                    continue
                flowing = True
                now = time.monotonic()
                if now + idle < ends:
                    deadline, why = now + idle, f"The task's stream sent nothing for {idle:g} s"
                else:
                    deadline, why = ends, f"The task's stream did not finish within {max_s:g} s"
        except TimeoutError:
            await self._record_timeout(task, started)
            raise TimedOut(why) from None
        finally:
            if stop is not None:
                stop.forget(stopping)
            await chunk_sub.unsubscribe()
            await result_sub.unsubscribe()

    def abandon(self, task: TaskSubmitted, *, then: Settle | None = None) -> None:
        """The client of `task` went away before its answer ended: the executor running it is told to stop
        (TaskCancelled, reason `disconnected`), so the provider is not paid for an answer nobody reads.
        `then`, if given, gets the outcome (`follow`). Never waits: called where the request is being torn
        down; `drain` awaits it at shutdown."""
        metrics.TASKS.labels("cancelled").inc()
        self._abandoning.spawn(self._follow(task, then, cancel=True))

    def follow(self, task: TaskSubmitted, *, then: Settle) -> None:
        """`then` gets the task's outcome once it is published, or None if none comes within
        `SETTLE_WAIT_S`: for a task nobody waits for any more (abandoned, or timed out: the executor
        hears `switchyard.task.timed_out` too), which is stopped but still charged for the calls it cut;
        its outcome says how much. Never waits; `drain` awaits it at shutdown."""
        self._abandoning.spawn(self._follow(task, then, cancel=False))

    async def _follow(self, task: TaskSubmitted, then: Settle | None, *, cancel: bool) -> None:
        outcome: Outcome | None = None
        try:
            if then is None:
                await self._cancel(task)
                return
            heard: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

            async def on_result(msg: Msg) -> None:
                if bus_guard.refused(msg, subscription=bus_guard.RESULTS):
                    return
                if (got := _decode_result(msg.data)) is not None and not heard.done():
                    heard.set_result(got)

            # Listening before the cancellation is published, so the outcome it causes cannot slip past;
            # one published before (as the client left) is read from the stream.
            sub = await self._results(task, on_result)
            try:
                if cancel:
                    await self._cancel(task)
                outcome = await stored_result(self._nc.jetstream(), task.tenant_id, task.task_id)
                if outcome is None:
                    async with asyncio.timeout(SETTLE_WAIT_S):
                        outcome = await heard
            except TimeoutError:
                log.info("no outcome of task %s within %g s", task.task_id, SETTLE_WAIT_S)
            finally:
                await sub.unsubscribe()
        except Exception as exc:
            log.warning("following task %s failed: %r", task.task_id, exc)
        finally:
            if then is not None:
                await then(outcome)

    async def _results(
        self, task: TaskSubmitted, on_result: Callable[[Msg], Awaitable[None]]
    ) -> legacy_subjects.Listening:
        """`on_result` subscribed to the task's result subject (and its previous one: `legacy_subjects`)."""
        return await legacy_subjects.listen(
            self._nc,
            subjects.result_subject(task.tenant_id, task.task_id),
            on_result,
            previous=self._legacy,
            tenant_id=task.tenant_id,
        )

    async def _cancel(self, task: TaskSubmitted) -> None:
        event = TaskCancelled(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            user_id=task.user_id,
            cancelled_at=datetime.now(UTC),
            reason="disconnected",
        )
        await self._record(task, event, "cancelled")

    async def drain(self) -> None:
        """Waits for the cancellations still being published, and the outcomes of tasks nobody waits for
        (at most `SETTLE_WAIT_S`), at shutdown: their admissions settle before the leases go back."""
        await self._abandoning.drain()

    async def _record_timeout(self, task: TaskSubmitted, started: float) -> None:
        metrics.TASKS.labels("timed_out").inc()
        event = TaskTimedOut(
            task_id=task.task_id, tenant_id=task.tenant_id, waited_ms=(time.monotonic() - started) * 1000
        )
        await self._record(task, event, "timed_out")

    async def _record(self, task: TaskSubmitted, event: TaskCancelled | TaskTimedOut, what: str) -> None:
        """Publishes what became of `task` (`record`); logs a failure."""
        try:
            await record(self._publisher, event, what)
        except Exception:
            log.exception("could not record that task %s %s", task.task_id, what.replace("_", " "))


async def record(publisher: EventPublisher, event: TaskCancelled | TaskTimedOut, what: str) -> None:
    """Publishes what became of a task (`what`: cancelled, timed_out) under an event id derived from the
    task's: stored once, whoever publishes it (its gateway, or the replica settling for a dead one)."""
    await publisher.publish(
        event,
        event_id=publisher.derived_id(event.task_id, what, tenant_id=event.tenant_id),
        tenant_id=event.tenant_id,
        event_subject=event.task_id,
    )


async def stored_result(js: JetStreamContext, tenant_id: str, task_id: str) -> Outcome | None:
    """The task's result event as the events stream keeps it, if it was published (`results.stored`)."""
    msg = await results.stored(js, tenant_id, task_id)
    return None if msg is None else _decode_result(msg.data or b"")


def _count(outcome: Outcome) -> None:
    """A task's outcome reached the request (or the task API) waiting for it: a task the task API
    cancelled ends `task_cancelled`."""
    if isinstance(outcome, TaskCompleted):
        metrics.TASKS.labels("completed").inc()
    else:
        metrics.TASKS.labels("cancelled" if outcome.error_code == "task_cancelled" else "failed").inc()


def _shed(task: TaskSubmitted) -> None:
    """A published chat task's messages let go, in place (for every holder of this task at once: the
    request's frames, its stream, its face): its answer is rendered from the request's other fields, and
    the messages are most of what a large request holds while it waits, for minutes (a coding agent's
    context, its screenshots: MBs each). Not for the task API's tasks (`start`), whose runs keep theirs."""
    if isinstance(task.request, ChatRequest):
        task.request.messages = []


def _decode_result(raw: bytes) -> Any:
    try:
        _, payload = decode(raw, (TaskCompleted, TaskFailed))
    except InvalidEvent as exc:
        log.warning("ignoring an invalid result event: %s", exc.message)
        return None
    return payload
