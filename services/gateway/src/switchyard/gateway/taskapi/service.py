"""Submit without waiting, read status and result, cancel: each scoped to the caller's organisation.

A submitted task is admitted like any other (rate limits, concurrency, budget reservation); the replica
that submitted it follows its result and settles the admission when it arrives, or releases it on
cancellation (on any replica: it hears `task.cancelled`) or after the task timeout.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from switchyard.common import bus_guard, subjects
from switchyard.common.bus import EventPublisher
from switchyard.common.envelope import decode
from switchyard.common.errors import InvalidEvent
from switchyard.common.events import (
    TaskBudget,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    TaskTimedOut,
)
from switchyard.gateway import metrics
from switchyard.gateway.admission import Pass
from switchyard.gateway.budgets.capped import budgeted
from switchyard.gateway.errors import Conflict, NotFound, shown
from switchyard.gateway.taskapi.models import TERMINAL, Status, TaskState
from switchyard.gateway.taskapi.store import TaskStore, from_outcome, with_outcome
from switchyard.gateway.tasks import SETTLE_WAIT_S, AckLost, TaskClient, record
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)


class TaskRuns:
    def __init__(
        self, store: TaskStore, client: TaskClient, events: EventPublisher, *, timeout_s: float
    ) -> None:
        self.store = store
        self._client = client
        self._events = events
        self._timeout_s = timeout_s
        self._following: dict[str, asyncio.Task[None]] = {}
        self._passes: dict[str, Pass] = {}
        self._followed: dict[str, str] = {}  # the tenant of each task followed here
        self._deadlines: dict[str, asyncio.Timeout] = {}
        self._cancellations: list[Subscription] = []
        self._uncertain: set[str] = set()  # followed though their publishing's ack was lost (`AckLost`)

    async def start(self, nc: Client) -> None:
        """Hears every cancellation (`task.cancelled`, published by whichever replica was asked): a task
        followed here and cancelled on another replica settles its admission as soon as its outcome
        comes, or after SETTLE_WAIT_S (a task no executor has taken yet is skipped, none of it charged),
        not when an executor gets to it or the follow ends an hour later."""

        async def heard(msg: Msg) -> None:
            if bus_guard.refused(msg, subscription=subjects.TASK_CANCELLED):
                return
            try:
                _, event = decode(msg.data, (TaskCancelled,), subject=msg.subject)
            except InvalidEvent:
                return
            if isinstance(event, TaskCancelled) and self._followed.get(event.task_id) == event.tenant_id:
                self._settle_soon(event.task_id)

        # the trusted publishers' and the tenant-scoped systems' (`task.cancelled.<token>`, checked by
        # `decode` against its tenant): two subscriptions a replica, none a task
        self._cancellations = [
            await nc.subscribe(subject, cb=heard)
            for subject in (subjects.TASK_CANCELLED, f"{subjects.TASK_CANCELLED}.*")
        ]

    def _settle_soon(self, task_id: str) -> None:
        if (deadline := self._deadlines.get(task_id)) is not None:
            soon = asyncio.get_running_loop().time() + SETTLE_WAIT_S
            deadline.reschedule(min(soon, deadline.when() or soon))

    async def submit(
        self,
        *,
        task: TaskSubmitted,
        admitted: Pass,
        idempotency_key: str | None = None,
        request_sha256: str | None = None,
    ) -> TaskState:
        """Submit a new task, then store its state. With an idempotency key its key was claimed first
        (`keyed`), and a task stored meanwhile under its id (a claim taken over) is answered instead (its
        admission given back). Submitting first means a submission that failed on the bus stored
        nothing: no state says `queued` for a task that was never sent. Once published the task runs and
        will be charged, so it is answered even if its state cannot be stored yet (the store keeps it and
        writes it later). The task goes out with what its hard budget reserved (`capped.budgeted`)."""
        task = budgeted(task, admitted)
        state = _queued(task, idempotency_key, request_sha256)
        try:
            waiting = await self._client.start(task)
        except AckLost as lost:
            # The stream may hold it: it would run and be charged, so its admission stands, settled by its
            # outcome (or the task's timeout); a retry of its key publishes it again (`keyed`).
            self._uncertain.add(task.task_id)
            self._follow_with(state, admitted, lost.waiting)
            raise
        try:
            created = await self.store.create(state)
        except BaseException:
            waiting.cancel()
            raise
        if not created:
            waiting.cancel()
            await admitted.close()
            existing = await self.store.get(task.task_id)
            if existing is None:  # expired between the two reads: nothing to replay
                raise Conflict(
                    "a task with this Idempotency-Key just expired; retry", code="conflict", retry=True
                )
            return await self.current(existing)
        self._follow_with(state, admitted, waiting)
        return state

    async def resend(
        self,
        *,
        task: TaskSubmitted,
        budget: TaskBudget | None,
        idempotency_key: str,
        request_sha256: str,
    ) -> TaskState:
        """A keyed task whose publishing's ack was lost, published again under its id by a retry (within
        the duplicate window: stored once), with the first request's hard-budget caps and no admission of
        its own: the first request's stands, settled by the replica that follows it. Its state stored."""
        task = task if budget is None else task.model_copy(update={"budget": budget})
        await self._client.resend(task)
        state = _queued(task, idempotency_key, request_sha256)
        if await self.store.create(state):
            return state
        return await self.current(await self.store.get(task.task_id) or state)

    def _follow_with(
        self, state: TaskState, admitted: Pass, waiting: asyncio.Future[TaskCompleted | TaskFailed]
    ) -> None:
        self._passes[state.id] = admitted
        self._followed[state.id] = state.tenant_id
        self._following[state.id] = asyncio.create_task(self._follow(state, waiting))

    async def _follow(self, state: TaskState, waiting: asyncio.Future[TaskCompleted | TaskFailed]) -> None:
        admitted = self._passes[state.id]
        try:
            async with asyncio.timeout(self._timeout_s) as deadline:
                self._deadlines[state.id] = deadline
                outcome = await waiting
        except TimeoutError:
            told = await self._told(state)
            try:
                if told:
                    await self._time_out(state)
            finally:
                await self._finish(state, status="timed_out" if told else None)
            return
        except asyncio.CancelledError:
            # The replica is stopping (`stop`) and the task runs on: its admission stays on the in-flight
            # list, which the replica's last write hands over, and another replica settles it at its
            # outcome (`inflight`). Giving it back here counted the task as if it had never run.
            self._passes.pop(state.id, None)
            raise
        finally:
            self._deadlines.pop(state.id, None)
            self._followed.pop(state.id, None)
        admitted.observe(outcome)
        try:
            if await self._told(state):
                await self.store.change(state, lambda current: _answered(current, outcome))
        finally:  # the admission is settled even if the state cannot be read (GET finds the result)
            await self._finish(state, status=None)

    async def _time_out(self, state: TaskState) -> None:
        """Its result is no longer read: the task is timed out (`task.timed_out`, as the chat path does when
        its client's wait ends), so an executor still running it stops rather than spend on for nobody.
        Not a task that was cancelled or whose result is stored; published under the id every gateway
        uses for it (`tasks.record`): stored once."""
        try:
            current = await self.store.get(state.id) or state
            if (
                current.status != "queued"
                or await self.store.stored_outcome(state.tenant_id, state.id) is not None
            ):
                return
            metrics.TASKS.labels("timed_out").inc()
            waited = datetime.now(UTC) - state.created_at
            event = TaskTimedOut(
                task_id=state.id, tenant_id=state.tenant_id, waited_ms=waited.total_seconds() * 1000
            )
            await record(self._events, event, "timed_out")
        except Exception:
            log.exception("could not record that task %s timed out", state.id)

    async def _told(self, state: TaskState) -> bool:
        """Whether the task's state is to be written: not for a task whose publishing's ack was lost and
        whose state no retry stored (its client was told 503; a GET reads its result from the stream)."""
        return state.id not in self._uncertain or await self.store.get(state.id) is not None

    async def _finish(self, state: TaskState, *, status: Status | None) -> None:
        self._uncertain.discard(state.id)
        admitted = self._passes.pop(state.id, None)
        self._following.pop(state.id, None)
        if admitted is not None:
            await admitted.close()
        if status is not None:
            await self.store.change(state, lambda current: _ended(current, status))

    async def get(self, *, principal: Principal, task_id: str) -> TaskState:
        state = await self.store.get(task_id)
        if state is None:
            state = await self._told_by_result(principal, task_id)
        if state is None or state.tenant_id != principal.tenant_id:
            raise NotFound(f"no task {shown(task_id)} in this organisation", param="task_id")
        return await self.current(state)

    async def current(self, state: TaskState) -> TaskState:
        """The task as it is now: a state still `queued` whose result event is there (its follower went
        away before writing it, or has not yet) is answered, and stored, with that result; so is one
        cancelled or timed out whose answer came after all (`_answered`)."""
        if state.status in _ANSWERABLE and state.result is None:
            outcome = await self.store.stored_outcome(state.tenant_id, state.id)
            if outcome is not None:
                state = await self.store.change(state, lambda current: _answered(current, outcome))
        return state

    async def _told_by_result(self, principal: Principal, task_id: str) -> TaskState | None:
        """A task accepted while its state could not be stored, on a replica that does not hold it (or
        after the one that did went away): its result event, once there, answers. Only to the user who
        submitted it, so other tasks' results (chat completions) do not become readable here."""
        outcome = await self.store.stored_outcome(principal.tenant_id, task_id)
        if (
            outcome is None
            or outcome.tenant_id != principal.tenant_id
            or outcome.user_id != principal.user_id
        ):
            return None
        return from_outcome(outcome)

    async def cancel(self, *, principal: Principal, task_id: str) -> TaskState:
        state = await self.get(principal=principal, task_id=task_id)
        if state.status in TERMINAL:
            return state
        # Over the state read only: an outcome stored meanwhile (by the replica following the task)
        # stands, and is answered: the task ended as answered, its tokens spent.
        state = await self.store.change(state, lambda current: _ended(current, "cancelled"))
        if state.status != "cancelled":
            return state
        # Followed here: its outcome (what the calls the cancellation cut cost) settles its admission, if
        # it comes soon; a task not started yet is skipped and none of it was charged.
        self._settle_soon(task_id)
        event = TaskCancelled(
            task_id=task_id,
            tenant_id=state.tenant_id,
            user_id=principal.user_id,
            cancelled_at=state.updated_at,
        )
        await self._events.publish(
            event,
            event_id=self._events.derived_id(task_id, "cancelled", tenant_id=state.tenant_id),
            tenant_id=state.tenant_id,
            event_subject=task_id,
        )
        return state

    async def stop(self) -> None:
        """Stops following the tasks (their admissions are handed over, see `_follow`); before the leases
        close, so that no settlement gives units back after them."""
        for sub in self._cancellations:
            await sub.unsubscribe()
        self._cancellations = []
        following = list(self._following.values())
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)
        await self.store.close()


# A task cancelled or timed out may still be answered: the answer was made before the cancellation
# reached its executor (or the executor's call ended as the hour did).
_ANSWERABLE = ("queued", "cancelled", "timed_out")


def _answered(state: TaskState, outcome: TaskCompleted | TaskFailed) -> TaskState:
    """A task still queued, with its outcome. One cancelled or timed out whose answer came after all is
    completed with it: the answer is billed in full, so it is delivered, not kept from its client under
    `cancelled`. Otherwise a task that ended stays as it ended (a failure, the cancellation's cut
    included, does not undo a cancellation)."""
    late = state.status in _ANSWERABLE and isinstance(outcome, TaskCompleted)
    return with_outcome(state, outcome) if state.status == "queued" or late else state


def _ended(state: TaskState, status: Status) -> TaskState:
    """A task still queued, ended without an outcome (cancelled, timed out)."""
    if state.status != "queued":
        return state
    return state.model_copy(update={"status": status, "updated_at": datetime.now(UTC)})


def _queued(task: TaskSubmitted, idempotency_key: str | None, request_sha256: str | None) -> TaskState:
    """The state of a task just sent: queued, now."""
    now = datetime.now(UTC)
    return TaskState(
        id=task.task_id,
        tenant_id=task.tenant_id,
        user_id=task.user_id,
        status="queued",
        model=task.request.model,
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
    )
