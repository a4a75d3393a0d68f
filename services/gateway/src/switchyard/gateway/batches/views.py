"""OpenAI's Batch API: /v1/batches (create, list), /v1/batches/{id} (retrieve), /v1/batches/{id}/cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from switchyard.gateway import serving
from switchyard.gateway.auth import authenticate
from switchyard.gateway.batches.models import Batch, BatchList, CreateBatch
from switchyard.gateway.batches.service import MAX_LIST, Batches
from switchyard.gateway.bodies import read_request_body
from switchyard.gateway.limits.service import requests_admitted
from switchyard.gateway.openapi import ERRORS, error_doc
from switchyard.gateway.state import gateway_of
from switchyard.gateway.taskapi import idempotency
from switchyard.gateway.tenants import Principal

router = APIRouter(prefix="/v1/batches", tags=["batches"])
IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Retrying with the same key (and the same body) returns the batch the first request created; kept "
        "30 days. A different body under the same key is 409 `idempotency_key_reused`."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS},
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 429, 503)
}


async def _caller(request: Request) -> tuple[Batches, Principal]:
    gw = gateway_of(request)
    assert gw.batches is not None
    return gw.batches, await authenticate(request, gw.verifier)


@router.post(
    "",
    response_model=Batch,
    summary="Create a batch from an uploaded JSONL file (purpose `batch`)",
    openapi_extra={**serving.schema_of(CreateBatch), "parameters": [IDEMPOTENCY_HEADER]},
    responses={
        **_ERRORS,
        409: error_doc("`idempotency_key_reused`: the Idempotency-Key came with a different body"),
        429: error_doc(
            "`rate_limit_exceeded`: the requests-per-minute limits a completion takes (see Retry-After and "
            "x-ratelimit-*-requests); `batch_limit_exceeded`: SWITCHYARD_BATCH_ORG_UNFINISHED batches not "
            "finished yet"
        ),
        507: error_doc(
            "`organization_files_full`: the organisation's files hold SWITCHYARD_FILES_ORG_BYTES, or it has "
            "SWITCHYARD_FILES_ORG_COUNT files (a batch's output would pass them): delete files first"
        ),
    },
)
async def create_batch(request: Request, response: Response) -> Batch:
    batches, principal = await _caller(request)
    gw = gateway_of(request)
    response.headers.update(await requests_admitted(gw.admission.limiter, principal))
    async with gw.intake.taking(request):  # a create is a few hundred bytes, but read up to the body limit
        body = await read_request_body(request, gw.settings)
        return await batches.create(principal=principal, body=body, key=idempotency.idempotency_key(request))


@router.get(
    "", response_model=BatchList, summary="The organisation's batches, newest first", responses=_ERRORS
)
async def list_batches(
    request: Request, after: str | None = None, limit: int = Query(default=20, ge=1, le=MAX_LIST)
) -> BatchList:
    batches, principal = await _caller(request)
    return await batches.list(principal=principal, after=after, limit=limit)


@router.get("/{batch_id}", response_model=Batch, summary="A batch", responses=_ERRORS)
async def retrieve_batch(batch_id: str, request: Request) -> Batch:
    batches, principal = await _caller(request)
    return await batches.retrieve(principal=principal, batch_id=batch_id)


@router.post(
    "/{batch_id}/cancel",
    response_model=Batch,
    summary="Cancel a batch: `cancelling`, then `cancelled` with the partial output",
    responses={**_ERRORS, 409: error_doc("`batch_not_cancellable`: the batch already ended")},
)
async def cancel_batch(batch_id: str, request: Request) -> Batch:
    batches, principal = await _caller(request)
    return await batches.cancel(principal=principal, batch_id=batch_id)
