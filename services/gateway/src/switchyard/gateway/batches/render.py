"""A batch's output and error files, line by line in OpenAI's shape:

    {"id": "batch_req_...", "custom_id": "...", "response": {"status_code": 200, "request_id": "...",
     "body": <the endpoint's answer>}, "error": null}

A line that failed has its endpoint's HTTP status and `{"error": {...}}` body as `response`; a line the
batch never finished (cancelled, expired) has `response: null` and `error: {code, message}`."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from switchyard.common.events import TaskFailed
from switchyard.common.ids import derived_id
from switchyard.gateway import embeddings, outcomes
from switchyard.gateway.batches.models import LineError
from switchyard.gateway.errors import APIError, TaskTimeout
from switchyard.gateway.taskapi.models import TaskState

UNFINISHED = {
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}


def task_id(tenant_id: str, batch_id: str, index: int) -> str:
    """The task a line becomes: the same on every replica and every attempt, so a runner that restarts
    (or takes over) finds it instead of submitting it twice."""
    return derived_id(f"{tenant_id}\n{batch_id}\n{index}", "batch-line")


def request_id(task_id: str) -> str:
    """A line's request id, as the gateway names a request (`req_`, as its `x-request-id`; OpenAI's output
    line says the id of the request the line was, `response.request_id`): its task's id behind `req_`,
    the same on every replica, so the output, its error bodies and the guardrail events the line caused
    all say it, and `GET /v1/tasks/{id}` finds the task by what follows `req_`."""
    return f"req_{task_id}"


def idempotency_key(batch_id: str, index: int) -> str:
    """The key its task carries (shown by GET /v1/tasks/{id})."""
    return f"{batch_id}:{index}"


def line_id(batch_id: str, index: int) -> str:
    return "batch_req_" + derived_id(f"{batch_id}:{index}", "batch-request")[:24]


def succeeded(batch_id: str, index: int, custom_id: str, *, request_id: str, body: bytes) -> bytes:
    """An output line: `body` is what the endpoint answered (JSON), kept byte for byte."""
    response = {"status_code": 200, "request_id": request_id, "body": orjson.Fragment(body)}
    return _line(batch_id, index, custom_id, response, None)


def failed(batch_id: str, index: int, custom_id: str, *, request_id: str, error: LineError) -> bytes:
    """An error line for a request that was answered with an error."""
    body = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
            "request_id": request_id,
        }
    }
    response = {"status_code": error.status, "request_id": request_id, "body": body}
    return _line(batch_id, index, custom_id, response, None)


def unfinished(batch_id: str, index: int, custom_id: str, *, ended: str) -> bytes:
    """An error line for a request the batch did not finish (`ended`: cancelled or expired)."""
    code, message = UNFINISHED[ended]
    return _line(batch_id, index, custom_id, None, {"code": code, "message": message})


def _line(batch_id: str, index: int, custom_id: str, response: object, error: dict[str, str] | None) -> bytes:
    line = {"id": line_id(batch_id, index), "custom_id": custom_id, "response": response, "error": error}
    return orjson.dumps(line) + b"\n"


def line_error(exc: APIError) -> LineError:
    return LineError(status=exc.status, type=exc.type, code=exc.code, message=exc.message, param=exc.param)


def task_error(state: TaskState, *, embedding: bool = False) -> LineError:
    """What the endpoint would have answered for a task that failed or timed out (the same mapping of
    a task's failure to an HTTP error as `POST /v1/chat/completions`; an `embedding` task's as
    `POST /v1/embeddings`)."""
    if state.status == "timed_out" or state.error is None:
        return line_error(
            TaskTimeout(f"The task {state.id} did not finish in time; it was recorded as timed out")
        )
    failure = TaskFailed(
        task_id=state.id,
        tenant_id=state.tenant_id,
        error_code=state.error.code,
        error_message=state.error.message,
        failed_at=datetime.now(UTC),
    )
    try:
        (embeddings.raise_for_failure if embedding else outcomes.raise_for_failure)(failure)
    except APIError as exc:
        return line_error(exc)
