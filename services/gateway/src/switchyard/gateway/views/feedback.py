"""`POST /v1/feedback`: a user rates a task's answer; recorded as a `TaskFeedback` event the ledger keeps.

Scoped to the caller's organisation: the event carries the caller's tenant, and whoever learns from it
joins feedback to tasks by (tenant, task id), so feedback can never touch another organisation's task.
Only a finished task of the caller's organisation can be rated: its result event (kept as long as the
events stream keeps it, 7 days) must be on the bus, so the ledger never records feedback on a task that
does not exist. No free text is accepted (it would end up in the ledger).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from switchyard.common.events.feedback import FeedbackReason, Rating, TaskFeedback
from switchyard.common.events.tasks import TaskType
from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors import Conflict, NotFound
from switchyard.gateway.messages_render import MESSAGE_ID
from switchyard.gateway.responses import RESPONSE_ID
from switchyard.gateway.schemas import COMPLETION_ID
from switchyard.gateway.state import gateway_of

router = APIRouter(tags=["feedback"])
ANSWER_PREFIXES = (COMPLETION_ID, MESSAGE_ID, RESPONSE_ID)  # the ids the three faces answer with


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the task's id, or the id of its answer (`chatcmpl-<id>`, `msg_<id>`)",
    )
    rating: Rating
    task_type: TaskType | None = Field(default=None, description="the type the task really was")
    reason: FeedbackReason | None = None

    @field_validator("task_id")
    @classmethod
    def _task_of_answer(cls, v: str) -> str:
        """The id a completion or a message answered with names its task (`x-switchyard-task-id`)."""
        for prefix in ANSWER_PREFIXES:
            if v.startswith(prefix) and len(v) > len(prefix):
                return v[len(prefix) :]
        return v


class FeedbackRecorded(BaseModel):
    id: str
    task_id: str
    rating: Rating
    task_type: TaskType | None = None
    reason: FeedbackReason | None = None


@router.post(
    "/v1/feedback",
    status_code=202,
    response_model=FeedbackRecorded,
    summary="Rate a finished task's answer",
    responses={
        404: {"description": "no finished task of that id in the caller's organisation"},
        409: {"description": "the task has not finished"},
    },
)
async def post_feedback(body: FeedbackRequest, request: Request) -> JSONResponse:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    outcome = await gw.runs.store.stored_outcome(principal.tenant_id, body.task_id)
    if outcome is None or outcome.tenant_id != principal.tenant_id:
        state = await gw.runs.store.get(body.task_id)
        if state is not None and state.tenant_id == principal.tenant_id:
            raise Conflict(
                f"task '{body.task_id}' has not finished; rate it once it has", code="task_not_finished"
            )
        # Another organisation's task is no task here: the answer must not tell that it exists.
        raise NotFound(
            f"no finished task '{body.task_id}' in this organisation", code="task_not_found", param="task_id"
        )
    event = TaskFeedback(
        task_id=body.task_id,
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        rating=body.rating,
        task_type=body.task_type,
        reason=body.reason,
        at=datetime.now(UTC),
    )
    event_id = await gw.events.publish(event, tenant_id=principal.tenant_id, event_subject=body.task_id)
    out = FeedbackRecorded(id=event_id, **body.model_dump())
    return JSONResponse(out.model_dump(mode="json"), status_code=202)
