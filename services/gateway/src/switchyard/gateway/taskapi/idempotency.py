"""`Idempotency-Key` on POST /v1/tasks: a client that retries a submission after a timeout or a dropped
connection gets the task its first request created, not a second task and a second charge.

The task id is derived from the organisation and the key, so every replica finds the same task and the
bus's duplicate window drops a second `task.submitted` for it. The key is kept as long as the task (seven
days); a retry must carry the same body, byte for byte, or it is refused with 409.
"""

from __future__ import annotations

from fastapi import Request

from switchyard.common.ids import derived_id
from switchyard.gateway.errors import Conflict, InvalidRequest
from switchyard.gateway.taskapi.models import TaskState

HEADER = "idempotency-key"
MAX_KEY_CHARS = 255


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable() or not key.isascii():
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters", param=HEADER
        )
    return key


def task_id_for(tenant_id: str, key: str) -> str:
    return derived_id(f"{tenant_id}\n{key}", "idempotency")


def replayed(state: TaskState, request_sha256: str) -> TaskState:
    """The task a retried request gets back; a different body under the same key is a client bug."""
    if state.request_sha256 is not None and state.request_sha256 != request_sha256:
        raise Conflict(
            "this Idempotency-Key was used with a different request body",
            code="idempotency_key_reused",
            param=HEADER,
            retry=False,
        )
    return state
