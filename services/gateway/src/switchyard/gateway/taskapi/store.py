"""Task state in JetStream KV (bucket `switchyard-tasks`, key = task id), shared by every replica.

The submitting replica follows the result subject and records the outcome; any replica answers a status
request, and when the state still says `queued` it looks for the stored result event in the stream
itself, so a task whose submitting replica went away still reports its outcome.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.errors import InvalidEvent
from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.gateway.taskapi.models import TaskError, TaskResult, TaskState, TaskUsage

KEEP_S = 7 * 24 * 3600.0  # as long as the events stream keeps the result
# Task ids are ours (hex); anything else is no task, and must not reach a KV key or a subject token.
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


async def tasks_bucket(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(subjects.KV_TASKS)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=subjects.KV_TASKS, history=1, ttl=KEEP_S)


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
            usage=TaskUsage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
            ),
        )
        return state.model_copy(update={"status": "completed", "result": result, "updated_at": now})
    error = TaskError(code=outcome.error_code, message=outcome.error_message)
    return state.model_copy(update={"status": "failed", "error": error, "updated_at": now})


class TaskStore:
    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self._kv = kv
        self._js = js

    async def put(self, state: TaskState) -> None:
        await self._kv.put(state.id, _stored(state))

    async def create(self, state: TaskState) -> bool:
        """Store a new task; False when a task with this id is already there (an idempotent retry that
        raced the first request)."""
        try:
            await self._kv.create(state.id, _stored(state))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def get(self, task_id: str) -> TaskState | None:
        if not _TASK_ID.fullmatch(task_id):
            return None
        try:
            entry = await self._kv.get(task_id)
        except (KeyNotFoundError, ValueError):
            return None
        return TaskState.model_validate_json(entry.value or b"{}")

    async def stored_outcome(self, task_id: str) -> TaskCompleted | TaskFailed | None:
        if not _TASK_ID.fullmatch(task_id):
            return None
        try:
            msg = await self._js.get_last_msg(subjects.STREAM_EVENTS, subjects.result_subject(task_id))
        except NotFoundError:
            return None
        try:
            _, payload = decode(msg.data, (TaskCompleted, TaskFailed))
        except InvalidEvent:
            return None
        return payload  # type: ignore[return-value]


def _stored(state: TaskState) -> bytes:
    # `request_sha256` is excluded from answers, not from the store.
    return json.dumps({**state.model_dump(mode="json"), "request_sha256": state.request_sha256}).encode()
