"""Task state in JetStream KV (bucket `switchyard-tasks`, key = task id), shared by every replica.

The submitting replica follows the result subject and records the outcome; any replica answers a status
request, and when the state still says `queued` it looks for the stored result event in the stream
itself, so a task whose submitting replica went away still reports its outcome.

A task's state is stored after the task was published: by then it runs and will be charged, so a write
the bucket refuses (a leader election, a brief bus error) must not make its submission fail. A new task's
write is retried for `retry_s`; a write still refused is kept here (this replica answers from it) and
written in the background as soon as the bucket takes it. Should that never happen (this replica stops
first), the task's result event on the stream still answers for it (`TaskRuns.get`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchyard.common import kv, subjects
from switchyard.common.backlog import Backlog
from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.gateway.taskapi.models import Claim, TaskError, TaskResult, TaskState, TaskUsage
from switchyard.gateway.tasks import stored_result

if TYPE_CHECKING:
    from switchyard.gateway.access.fence import ErasedFence

log = logging.getLogger(__name__)

KEEP_S = 7 * 24 * 3600.0  # as long as the events stream keeps the result
RETRY_S = 2.0  # a new task's state write is retried this long before the submission is answered anyway
# A state write the bucket refused is retried in the background this long (then only the result event
# on the stream answers for the task), at most every MAX_WRITE_DELAY_S.
KEEP_TRYING_S = 3600.0
MAX_WRITE_DELAY_S = 5.0
# Task ids are ours (hex); anything else is no task, and must not reach a KV key or a subject token.
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


async def tasks_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_TASKS, ttl_s=KEEP_S)


def with_outcome(state: TaskState, outcome: TaskCompleted | TaskFailed) -> TaskState:
    now = datetime.now(UTC)
    if isinstance(outcome, TaskCompleted):
        usage = outcome.usage
        result = TaskResult(
            model=outcome.model,
            tier=outcome.tier,
            content=outcome.content,
            finish_reason=outcome.finish_reason,
            tool_calls=outcome.tool_calls,
            thinking=outcome.thinking,
            other_choices=outcome.other_choices,
            logprobs=outcome.logprobs,
            logprobs_truncated=outcome.logprobs_truncated,
            refusal=outcome.refusal,
            usage=TaskUsage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                reasoning_tokens=usage.reasoning_tokens,
            ),
        )
        return state.model_copy(update={"status": "completed", "result": result, "updated_at": now})
    error = TaskError(code=outcome.error_code, message=outcome.error_message)
    return state.model_copy(update={"status": "failed", "error": error, "updated_at": now})


def from_outcome(outcome: TaskCompleted | TaskFailed) -> TaskState:
    """A task whose state was never stored, told from its result event alone. The event does not say
    which model was asked for or when the task was submitted: `model` is the model that answered
    (`unknown` for a failure), `created_at` the time of the result."""
    at = outcome.completed_at if isinstance(outcome, TaskCompleted) else outcome.failed_at
    model = outcome.model if isinstance(outcome, TaskCompleted) else "unknown"
    told = TaskState(
        id=outcome.task_id,
        tenant_id=outcome.tenant_id,
        user_id=outcome.user_id,
        status="queued",
        model=model,
        created_at=at,
        updated_at=at,
    )
    return with_outcome(told, outcome).model_copy(update={"updated_at": at})


class TaskStore:
    def __init__(
        self,
        kv: KeyValue,
        js: JetStreamContext,
        *,
        retry_s: float = RETRY_S,
        keep_trying_s: float = KEEP_TRYING_S,
    ) -> None:
        self._kv = kv
        self._js = js
        self._retry_s = retry_s
        self._keep_trying_s = keep_trying_s
        # States the bucket refused, newest version, and since when (monotonic); those in `_new` were never
        # stored, so they are created (a racing replica's task under the same id is not overwritten).
        self._pending: dict[str, tuple[TaskState, float]] = {}
        self._new: set[str] = set()
        self._backlog = Backlog(
            self._write_each, self._pending.__len__, what="task states", max_s=MAX_WRITE_DELAY_S
        )
        self.fence: ErasedFence | None = None  # a state written as its organisation is erased is purged

    async def _fenced(self, state: TaskState) -> None:
        """Asked right after a state was written: when its organisation was erased meanwhile (a task that
        ran across the erasure, access/fence.py), its states and their Idempotency-Key claims are purged
        as the erasure purges them (rare: only an erased organisation's late writes get here)."""
        if self.fence is not None and await self.fence.undone(state.tenant_id, f"the task {state.id}"):
            try:
                await erase_tenant(self._kv, state.tenant_id)
            except (nats.errors.Error, TimeoutError) as exc:  # the write stands: an erasure again removes it
                log.warning("task %s of an erased organisation: its state not purged (%r)", state.id, exc)

    async def put(self, state: TaskState) -> None:
        """Store a task's new state; if the bucket refuses it, it is kept here and written later."""
        if state.id in self._pending:
            self._pending[state.id] = (state, self._pending[state.id][1])
            return
        try:
            await self._kv.put(state.id, _stored(state))
        except Exception as exc:
            self._defer(state, new=False, reason=exc)
            return
        await self._fenced(state)

    async def change(self, state: TaskState, step: Callable[[TaskState], TaskState]) -> TaskState:
        """`step` applied to the task's stored state (`state` if none is stored) and stored, over the
        version it read only: when another replica wrote first (a DELETE meeting the task's outcome),
        `step` is applied to that write instead of undoing it. Returns the state as it now is."""
        while state.id not in self._pending:
            try:
                entry = await self._kv.get(state.id)
            except (KeyNotFoundError, ValueError):  # not stored (expired): written as `state` was
                break
            current = TaskState.model_validate_json(entry.value or b"{}")
            if (changed := step(current)) is current:
                return current
            try:
                await self._kv.update(state.id, _stored(changed), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            except Exception as exc:
                self._defer(changed, new=False, reason=exc)
                return changed
            await self._fenced(changed)
            return changed
        changed = step(self._pending[state.id][0] if state.id in self._pending else state)
        await self.put(changed)
        return changed

    async def create(self, state: TaskState) -> bool:
        """Store a new (already published) task; False when a task with this id is already there (an
        idempotent retry that raced the first request). A write the bucket refuses is retried for
        `retry_s`, then kept here (True): the task runs, so its submission must not fail."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_s
        delay, refused = 0.05, False
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.25)):
                    return await self._create(state, retried=refused)
            except Exception as exc:  # a timed-out attempt may still have stored it: `_create` knows ours
                if loop.time() + delay >= deadline:
                    self._defer(state, new=True, reason=exc)
                    return True
                refused = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _create(self, state: TaskState, *, retried: bool) -> bool:
        try:
            await self._kv.create(state.id, _stored(state))
        except KeyWrongLastSequenceError:
            if not retried:
                return False
            # An earlier attempt whose answer was lost may have stored it: then it is ours, not a race.
            entry = await self._kv.get(state.id)
            stored = TaskState.model_validate_json(entry.value or b"{}")
            return stored.created_at == state.created_at
        await self._fenced(state)
        return True

    def _defer(self, state: TaskState, *, new: bool, reason: BaseException) -> None:
        log.warning("task %s: state not stored (%s); kept here until the bucket takes it", state.id, reason)
        self._pending[state.id] = (state, time.monotonic())
        if new:
            self._new.add(state.id)
        self._backlog.kick()

    async def _write_each(self) -> None:
        for task_id, (state, since) in list(self._pending.items()):
            if time.monotonic() - since > self._keep_trying_s:
                log.error("task %s: state never stored; only its result event answers for it", task_id)
            elif task_id not in self._new:
                await self._kv.put(task_id, _stored(state))
                await self._fenced(state)
            elif await self._create(state, retried=True):
                self._new.discard(task_id)  # stored; a version newer than `state` is put next round
            else:  # another replica stored a task under this id (an idempotent retry): its state stands
                log.warning("task %s: another request stored this task first", task_id)
                self._pending[task_id] = (state, since)  # so it is dropped below
            if self._pending[task_id][0] is state:
                del self._pending[task_id]
                self._new.discard(task_id)

    async def close(self) -> None:
        """One last attempt at the states the bucket refused (a replica going away)."""
        await self._backlog.close()

    async def get(self, task_id: str) -> TaskState | None:
        if not _TASK_ID.fullmatch(task_id):
            return None
        if (pending := self._pending.get(task_id)) is not None:
            return pending[0]
        try:
            entry = await self._kv.get(task_id)
        except (KeyNotFoundError, ValueError):
            return None
        return TaskState.model_validate_json(entry.value or b"{}")

    async def claim(self, key: str) -> tuple[Claim, int] | None:
        """The claim on an Idempotency-Key (`idempotency.claim_key`) and its revision, if one is kept."""
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, ValueError):
            return None
        return Claim.model_validate_json(entry.value or b"{}"), entry.revision or 0

    async def take(self, key: str, claim: Claim, *, over: int | None = None) -> int | None:
        """Claims an Idempotency-Key for `claim`'s body: a new claim, or one replacing the claim at revision
        `over` (its request went away before its task was stored); the claim's revision, or None when
        another request claimed it first. Retried for `retry_s`; a claim the bucket still refuses raises
        (nothing was published yet, so the submission fails whole and may be sent again)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_s
        delay, refused = 0.05, False
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.25)):
                    if over is None:
                        return await self._kv.create(key, claim.model_dump_json().encode())
                    return await self._kv.update(key, claim.model_dump_json().encode(), last=over)
            except KeyWrongLastSequenceError:
                if not refused:
                    return None
                # An earlier attempt whose answer was lost may have taken it: then it is ours.
                found = await self.claim(key)
                return found[1] if found is not None and found[0] == claim else None
            except Exception:
                if loop.time() + delay >= deadline:
                    raise
                refused = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def unsent(self, key: str, claim: Claim, revision: int) -> None:
        """Says that a claim's task was not published (its publishing failed), so the next request with
        its body takes it over at once. Best effort: a claim that still says nothing is taken over once
        stale (`keyed.CLAIM_STALE_S`)."""
        try:
            marked = claim.model_copy(update={"unsent": True})
            await self._kv.update(key, marked.model_dump_json().encode(), last=revision)
        except Exception as exc:
            log.warning("claim %s not marked unsent (%r); taken over once stale", key, exc)

    async def uncertain(self, key: str, claim: Claim, revision: int) -> None:
        """Says that a claim's task may be in the stream (its publishing's ack was lost: `claim` names
        its event id), so a retry publishes it again under that id rather than submit a new task. Best
        effort: a claim that still says nothing is taken over once stale (`keyed.CLAIM_STALE_S`)."""
        try:
            await self._kv.update(key, claim.model_dump_json().encode(), last=revision)
        except Exception as exc:
            log.warning("claim %s not marked uncertain (%r); taken over once stale", key, exc)

    async def stored_outcome(self, tenant_id: str, task_id: str) -> TaskCompleted | TaskFailed | None:
        if not _TASK_ID.fullmatch(task_id):
            return None
        return await stored_result(self._js, tenant_id, task_id)


def _stored(state: TaskState) -> bytes:
    # `request_sha256` is excluded from answers, not from the store.
    return json.dumps({**state.model_dump(mode="json"), "request_sha256": state.request_sha256}).encode()


async def erase_tenant(bucket: KeyValue, tenant_id: str) -> int:
    """Deletes the tenant's task states (their answers) and the Idempotency-Key claims of its tasks, history
    included (an erasure); how many tasks. Every entry is read: the keys are task ids, not the tenant's."""
    theirs: set[str] = set()
    claims: list[tuple[str, str]] = []
    for key in await kv.keys(bucket):
        value, _ = await kv.read(bucket, key)
        if not value:
            continue
        try:
            data = json.loads(value)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if key.startswith("claim."):
            claims.append((key, str(data.get("task_id"))))
        elif data.get("tenant_id") == tenant_id:
            await bucket.purge(key)
            theirs.add(key)
    for key, task_id in claims:
        if task_id in theirs:
            await bucket.purge(key)
    return len(theirs)
