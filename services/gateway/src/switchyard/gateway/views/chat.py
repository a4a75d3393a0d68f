from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from switchyard.gateway import serving
from switchyard.gateway.legacy import CompletionsRequest
from switchyard.gateway.openapi import INFERENCE_ERRORS
from switchyard.gateway.responses import ResponsesRequest
from switchyard.gateway.schemas import ChatCompletionRequest

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(ChatCompletionRequest),
)
async def chat_completions(request: Request) -> Response:
    return await serving.serve(request, serving.OPENAI)


@router.post(
    "/v1/responses",
    summary="Create a response (OpenAI Responses-compatible, stateless: the whole conversation in `input`)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(ResponsesRequest),
)
async def create_response(request: Request) -> Response:
    return await serving.serve(request, serving.RESPONSES)


@router.post(
    "/v1/completions",
    summary="Create a completion (OpenAI's legacy completions; chat models answer the prompt as a user turn)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(CompletionsRequest),
)
async def legacy_completions(request: Request) -> Response:
    return await serving.serve(request, serving.LEGACY)
