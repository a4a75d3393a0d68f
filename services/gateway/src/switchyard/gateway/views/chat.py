from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from switchyard.gateway import serving
from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors import NotFound
from switchyard.gateway.legacy import CompletionsRequest
from switchyard.gateway.openapi import ERRORS, INFERENCE_ERRORS
from switchyard.gateway.responses import ResponsesRequest
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.state import gateway_of

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
    summary="Create a response (OpenAI Responses-compatible; stored unless `store: false`)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(ResponsesRequest),
)
async def create_response(request: Request) -> Response:
    return await serving.serve(request, serving.RESPONSES)


@router.post(
    "/v1/responses/{response_id}/cancel",
    summary="Not served (background responses are not): a 404 `not_found` saying so",
    responses=ERRORS,
)
async def cancel_response(request: Request, response_id: str) -> Response:
    await authenticate(request, gateway_of(request).verifier)
    raise NotFound(
        f"Response {response_id[:80]!r} cannot be cancelled: only background responses can, and Switchyard "
        "serves none (`background` is refused); a response is answered by its request",
        param="response_id",
    )


@router.post(
    "/v1/responses/{name}",
    summary="Not served (`input_tokens`, `compact`): a 404 `not_found` saying what is",
    responses=ERRORS,
)
async def unserved_response_operation(request: Request, name: str) -> Response:
    """Without it a POST beside the stored-response routes would be a 405 that misleads."""
    await authenticate(request, gateway_of(request).verifier)
    raise NotFound(
        f"POST /v1/responses/{name} is not served here: of the Responses API, Switchyard serves "
        "POST /v1/responses and GET/DELETE /v1/responses/{id} (with its input_items)"
    )


@router.post(
    "/v1/completions",
    summary="Create a completion (OpenAI's legacy completions; chat models answer the prompt as a user turn)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(CompletionsRequest),
)
async def legacy_completions(request: Request) -> Response:
    return await serving.serve(request, serving.LEGACY)
