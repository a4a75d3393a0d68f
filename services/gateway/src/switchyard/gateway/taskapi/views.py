"""The native task API: /v1/tasks. POST submits without waiting (202 with the task id), GET reads its
status and result, DELETE cancels it. Tasks of another organisation are not found."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from switchyard.gateway import serving
from switchyard.gateway.openapi import INFERENCE_ERRORS, error_doc
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.taskapi import idempotency
from switchyard.gateway.taskapi.models import TaskState

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=INFERENCE_ERRORS)


@router.post(
    "",
    status_code=202,
    response_model=TaskState,
    summary="Submit a task (an OpenAI chat request) without waiting for it",
    openapi_extra={
        **serving.schema_of(ChatCompletionRequest),
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    "Retrying with the same key (and the same body) returns the task the first request "
                    "created; kept seven days. A different body under the same key is 409 "
                    "`idempotency_key_reused`."
                ),
                "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS},
            }
        ],
    },
    responses={
        409: error_doc(
            "`idempotency_key_reused`: the Idempotency-Key came with a different body; "
            "`idempotency_key_in_use`: its first request, with this body, is still being submitted (retry)"
        )
    },
)
async def submit_task(request: Request) -> JSONResponse:
    state = await serving.submit(request)
    return JSONResponse(
        state.model_dump(mode="json"), status_code=202, headers={"x-switchyard-task-id": state.id}
    )


@router.get("/{task_id}", response_model=TaskState, summary="A task's status, and its result once done")
async def get_task(task_id: str, request: Request) -> TaskState:
    return await serving.read_task(request, task_id)


@router.delete("/{task_id}", response_model=TaskState, summary="Cancel a task")
async def cancel_task(task_id: str, request: Request) -> TaskState:
    return await serving.read_task(request, task_id, cancel=True)
