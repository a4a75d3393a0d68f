from __future__ import annotations

import functools
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from switchyard.common.media_tokens import MediaRule
from switchyard.common.tokens import COUNT_INLINE_BYTES, count_prompt_off_loop
from switchyard.gateway import bodies, bounds, faces, serving
from switchyard.gateway.auth import authenticate
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.message_models import CountTokensRequest, MessagesRequest
from switchyard.gateway.messages import parse_count_request
from switchyard.gateway.openapi import ANTHROPIC_ERRORS
from switchyard.gateway.state import gateway_of

router = APIRouter()
ANTHROPIC_MEDIA = MediaRule("anthropic")


class TokenCount(BaseModel):
    input_tokens: int


@router.post(
    "/v1/messages",
    summary="Create a message (Anthropic Messages-compatible; `x-api-key` or bearer auth)",
    responses=ANTHROPIC_ERRORS,
    openapi_extra=serving.schema_of(MessagesRequest),
)
async def create_message(request: Request) -> Response:
    return await serving.serve(request, faces.ANTHROPIC)


@router.post(
    "/v1/messages/count_tokens",
    summary="Count a message's input tokens (Anthropic-compatible). Switchyard's estimate: cl100k_base over "
    "the system prompt, the messages, their tool calls and the tool definitions, and images and PDFs by "
    "Anthropic's documented rules (an image width x height / 750 after its resizing, a PDF page 3,000). "
    "Runs no task and takes no request or token quota: counts have a window of their own per user "
    "(`SWITCHYARD_LIMIT_USER_COUNTS_PER_MIN`, 600).",
    responses={
        **{status: spec for status, spec in ANTHROPIC_ERRORS.items() if status not in (502, 504)},  # no task
        200: {"model": TokenCount, "description": "The count"},
    },
    openapi_extra=serving.schema_of(CountTokensRequest),
)
async def count_tokens(request: Request) -> Response:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    if gw.admission.limiter is not None:
        await gw.admission.limiter.admit_count(principal, now=time.time())
    async with gw.intake.taking(request):  # the body's bytes, up to its count
        body = await bodies.read_request_body(request, gw.settings)
        read = functools.partial(parse_count_request, body, aliases=gw.catalog.policy.aliases)
        parsed = await bounds.read_off_loop(read, size=len(body))
        await gw.catalog.check(parsed.model, allowed=allowed_models(principal.key_policy))
        tokens = await count_prompt_off_loop(
            parsed, large=len(body) > COUNT_INLINE_BYTES, media=ANTHROPIC_MEDIA
        )
    return Response(TokenCount(input_tokens=tokens).model_dump_json(), media_type="application/json")
