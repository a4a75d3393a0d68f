from __future__ import annotations

import functools
import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from switchyard.common.media_tokens import MediaRule
from switchyard.common.tokens import COUNT_INLINE_BYTES, count_prompt_off_loop
from switchyard.gateway import bounds, faces, serving
from switchyard.gateway.auth import authenticate
from switchyard.gateway.bodies import read_request_body
from switchyard.gateway.errors import NotFound
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.legacy import CompletionsRequest
from switchyard.gateway.openapi import ERRORS, INFERENCE_ERRORS
from switchyard.gateway.responses import InputTokensRequest, ResponsesRequest, parse_count_request
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.state import gateway_of
from switchyard.gateway.stored_responses import chain

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(ChatCompletionRequest),
)
async def chat_completions(request: Request) -> Response:
    return await serving.serve(request, faces.OPENAI)


@router.post(
    "/v1/responses",
    summary="Create a response (OpenAI Responses-compatible; stored unless `store: false`)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(ResponsesRequest),
)
async def create_response(request: Request) -> Response:
    return await serving.serve(request, faces.RESPONSES)


class InputTokens(BaseModel):
    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int


@router.post(
    "/v1/responses/input_tokens",
    summary="Count a response request's input tokens (OpenAI's responses.input_tokens.count), an estimate: "
    "cl100k_base over the instructions, the input (with the conversation `previous_response_id` names) and "
    "the tools, and images (by `detail` and the model's family) and PDFs by OpenAI's documented rules. Runs "
    "no task and takes no request or token quota: counts have a window of their own per user "
    "(`SWITCHYARD_LIMIT_USER_COUNTS_PER_MIN`, 600).",
    response_model=InputTokens,
    responses={status: spec for status, spec in INFERENCE_ERRORS.items() if status not in (502, 504)},
    openapi_extra=serving.schema_of(InputTokensRequest),
)
async def count_input_tokens(request: Request) -> InputTokens:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    if gw.admission.limiter is not None:
        await gw.admission.limiter.admit_count(principal, now=time.time())
    async with gw.intake.taking(request):  # the body's bytes, up to its count
        body = await read_request_body(request, gw.settings)
        talk = await chain.load(gw.responses, principal.tenant_id, body)
        read = body if talk.data is None else talk.data
        parse = functools.partial(
            parse_count_request, read, items=talk.items, stored=gw.responses is not None
        )
        parsed = await bounds.read_off_loop(parse, size=len(body))
        await gw.catalog.check(parsed.model, allowed=allowed_models(principal.key_policy))
        media = MediaRule("openai", model=parsed.model)
        tokens = await count_prompt_off_loop(parsed, large=len(body) > COUNT_INLINE_BYTES, media=media)
    return InputTokens(input_tokens=tokens)


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
    summary="Not served (`compact`): a 404 `not_found` saying what is",
    responses=ERRORS,
)
async def unserved_response_operation(request: Request, name: str) -> Response:
    """Without it a POST beside the stored-response routes would be a 405 that misleads."""
    await authenticate(request, gateway_of(request).verifier)
    raise NotFound(
        f"POST /v1/responses/{name} is not served here: of the Responses API, Switchyard serves "
        "POST /v1/responses, POST /v1/responses/input_tokens and GET/DELETE /v1/responses/{id} (with its "
        "input_items)"
    )


@router.post(
    "/v1/completions",
    summary="Create a completion (OpenAI's legacy completions; chat models answer the prompt as a user turn)",
    responses=INFERENCE_ERRORS,
    openapi_extra=serving.schema_of(CompletionsRequest),
)
async def legacy_completions(request: Request) -> Response:
    return await serving.serve(request, faces.LEGACY)
