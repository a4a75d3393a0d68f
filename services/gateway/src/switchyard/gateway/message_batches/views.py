"""Anthropic's Message Batches API: /v1/messages/batches (create, list), /v1/messages/batches/{id}
(retrieve, delete), /v1/messages/batches/{id}/cancel and /v1/messages/batches/{id}/results. Errors in
Anthropic's shape, as on every `/v1/messages...` path (`errors_faces.anthropic_face`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from switchyard.gateway import serving
from switchyard.gateway.auth import authenticate
from switchyard.gateway.batches.views import IDEMPOTENCY_HEADER
from switchyard.gateway.bodies import body_chunks
from switchyard.gateway.errors import RequestTooLarge
from switchyard.gateway.limits.service import requests_admitted
from switchyard.gateway.message_batches.models import (
    MAX_LIST,
    CreateMessageBatch,
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchList,
)
from switchyard.gateway.message_batches.service import MAX_BYTES, MessageBatches, message_batch
from switchyard.gateway.openapi import ERRORS, AnthropicErrorResponse
from switchyard.gateway.state import gateway_of
from switchyard.gateway.taskapi import idempotency
from switchyard.gateway.tenants import Principal

router = APIRouter(prefix="/v1/messages/batches", tags=["message batches"])


def _doc(description: str) -> dict[str, Any]:
    return {"model": AnthropicErrorResponse, "description": description}


_SHOWN = (400, 401, 403, 404, 429, 503)
_ERRORS: dict[int | str, dict[str, Any]] = {
    k: {**v, "model": AnthropicErrorResponse} for k, v in ERRORS.items() if k in _SHOWN
}
_ENDED: dict[int | str, dict[str, Any]] = {409: _doc("`batch_not_ended`: the batch is still processing")}


async def _caller(request: Request) -> tuple[MessageBatches, Principal]:
    gw = gateway_of(request)
    assert gw.batches is not None
    service = MessageBatches(gw.batches, max_body_bytes=gw.settings.max_body_bytes)
    return service, await authenticate(request, gw.verifier)


async def _batch_sized(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's chunks; its 413 saying what a message batch takes."""
    try:
        async for chunk in chunks:
            yield chunk
    except RequestTooLarge as exc:
        raise RequestTooLarge(
            f"{exc.message}, what a message batch takes: split its requests into several batches"
        ) from exc


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post(
    "",
    response_model=MessageBatch,
    summary="Create a message batch (Anthropic Message Batches-compatible): its requests inline",
    openapi_extra={**serving.schema_of(CreateMessageBatch), "parameters": [IDEMPOTENCY_HEADER]},
    responses={
        **_ERRORS,
        409: _doc("`idempotency_key_reused`: the Idempotency-Key came with a different body"),
        400: _doc(
            "Invalid request: `invalid_json`, missing or invalid fields (`requests` given twice among them), "
            "`duplicate_custom_id`"
        ),
        429: _doc(
            "`rate_limit_exceeded`: the requests-per-minute limits a message takes (see Retry-After); "
            "`batch_limit_exceeded`: SWITCHYARD_BATCH_ORG_UNFINISHED batches not ended yet; "
            "`too_many_auth_failures`: too many failed authentication attempts"
        ),
        507: _doc(
            "`organization_files_full`: the organisation's files (message batches' requests and results "
            "among them) hold SWITCHYARD_FILES_ORG_BYTES, or SWITCHYARD_FILES_ORG_COUNT files"
        ),
        413: _doc(
            "`request_too_large`: the body is over 256 MB (or SWITCHYARD_FILES_MAX_BYTES), or one request's "
            "params over SWITCHYARD_MAX_BODY_BYTES (or, as sent, over it + 64 KiB), or another member of the "
            "body over that"
        ),
    },
)
async def create_message_batch(request: Request, response: Response) -> MessageBatch:
    service, principal = await _caller(request)
    gw = gateway_of(request)
    response.headers.update(await requests_admitted(gw.admission.limiter, principal))
    # Anthropic's 256 MB, or the files' limit where that is lower (a batch's requests are kept as a file)
    files_lower = gw.settings.files_max_bytes < MAX_BYTES
    limit = gw.settings.files_max_bytes if files_lower else MAX_BYTES
    chunks = body_chunks(request, limit=limit, setting="SWITCHYARD_FILES_MAX_BYTES" if files_lower else None)
    key = idempotency.idempotency_key(request)
    batch = await service.create(principal=principal, body=_batch_sized(chunks), key=key)
    return message_batch(batch, base_url=_base(request))


@router.get(
    "",
    response_model=MessageBatchList,
    summary="The organisation's message batches, newest first (paged by `before_id`, `after_id`, `limit`)",
    responses=_ERRORS,
)
async def list_message_batches(
    request: Request,
    before_id: str | None = None,
    after_id: str | None = None,
    limit: int = Query(default=20, ge=1, le=MAX_LIST),
) -> MessageBatchList:
    service, principal = await _caller(request)
    return await service.list(
        principal=principal, base_url=_base(request), before_id=before_id, after_id=after_id, limit=limit
    )


@router.get("/{message_batch_id}", response_model=MessageBatch, summary="A message batch", responses=_ERRORS)
async def retrieve_message_batch(message_batch_id: str, request: Request) -> MessageBatch:
    service, principal = await _caller(request)
    record = await service.get(principal=principal, batch_id=message_batch_id)
    return message_batch(record.batch, base_url=_base(request))


@router.post(
    "/{message_batch_id}/cancel",
    response_model=MessageBatch,
    summary="Cancel a message batch: `canceling`, then `ended` with its requests not run `canceled`",
    responses={**_ERRORS, 409: _doc("`batch_not_cancellable`: the batch already ended otherwise")},
)
async def cancel_message_batch(message_batch_id: str, request: Request) -> MessageBatch:
    service, principal = await _caller(request)
    batch = await service.cancel(principal=principal, batch_id=message_batch_id)
    return message_batch(batch, base_url=_base(request))


@router.delete(
    "/{message_batch_id}",
    response_model=DeletedMessageBatch,
    summary="Delete an ended message batch, its requests and results with it",
    responses={**_ERRORS, **_ENDED},
)
async def delete_message_batch(message_batch_id: str, request: Request) -> DeletedMessageBatch:
    service, principal = await _caller(request)
    return await service.delete(principal=principal, batch_id=message_batch_id)


@router.get(
    "/{message_batch_id}/results",
    summary="An ended message batch's results, JSONL: one `{custom_id, result}` per request",
    response_class=Response,
    responses={
        200: {"content": {"application/x-jsonl": {}}, "description": "the results, in the requests' order"},
        **_ERRORS,
        **_ENDED,
    },
)
async def message_batch_results(message_batch_id: str, request: Request) -> Response:
    service, principal = await _caller(request)
    size, chunks = await service.results(principal=principal, batch_id=message_batch_id)
    headers = {"content-length": str(size)}
    return StreamingResponse(chunks, media_type="application/x-jsonl", headers=headers)
