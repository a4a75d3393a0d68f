from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from switchyard.gateway import serving
from switchyard.gateway.messages import MessagesRequest
from switchyard.gateway.openapi import ANTHROPIC_ERRORS

router = APIRouter()


@router.post(
    "/v1/messages",
    summary="Create a message (Anthropic Messages-compatible; `x-api-key` or bearer auth)",
    responses=ANTHROPIC_ERRORS,
    openapi_extra=serving.schema_of(MessagesRequest),
)
async def create_message(request: Request) -> Response:
    return await serving.serve(request, serving.ANTHROPIC)
