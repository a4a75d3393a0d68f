"""OpenAI's Files API, for the Batch API: `POST /v1/files` (multipart: `file`, `purpose` = `batch`),
`GET /v1/files`, `GET /v1/files/{file_id}`, `GET /v1/files/{file_id}/content`, `DELETE /v1/files/{file_id}`.
Every call is scoped to the caller's organisation: another organisation's file is 404 `file_not_found` and
never listed. Any key that may run inference (the task API's rule) may upload, read and delete its
organisation's files. Nothing of a file (name or bytes) is logged or sent on the events stream."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors import APIError, InvalidRequest
from switchyard.gateway.files import upload
from switchyard.gateway.files.errors import FilesFull
from switchyard.gateway.files.models import UPLOAD_PURPOSES, FileDeleted, FileList, FileObject
from switchyard.gateway.files.share import Share
from switchyard.gateway.files.store import FileStore
from switchyard.gateway.limits.service import requests_admitted
from switchyard.gateway.metrics import FILE_UPLOADS_REFUSED
from switchyard.gateway.openapi import ERRORS, error_doc
from switchyard.gateway.state import Gateway, gateway_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/files", tags=["files"], responses=ERRORS)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_doc("`file_not_found` (also: another organisation's file)")
}
MAX_LIST = 10_000  # OpenAI's bounds for `limit`: 1 to 10,000, 10,000 by default

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a batch input file: JSONL named `.jsonl`, one request per line",
                        },
                        "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
                        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                        "expires_after[seconds]": {
                            "type": "integer",
                            "minimum": upload.EXPIRES_AFTER_S[0],
                            "maximum": upload.EXPIRES_AFTER_S[1],
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=FileObject,
    summary="Upload a batch input file",
    openapi_extra=_UPLOAD_BODY,
    responses={
        400: error_doc(
            "`invalid_multipart`, `missing_field` / `invalid_type` / `invalid_value` naming `file`, "
            "`purpose` or `expires_after.*`, `invalid_file_format` (not `.jsonl`), `invalid_jsonl` (a line "
            "that is not a UTF-8 JSON object), `empty_file`"
        ),
        413: error_doc("`file_too_large`: over SWITCHYARD_FILES_MAX_BYTES"),
        429: error_doc(
            "`rate_limit_exceeded`: the requests-per-minute limits a completion takes (see Retry-After and "
            "x-ratelimit-*-requests), `emergency_throttle`; `too_many_auth_failures`"
        ),
        507: error_doc(
            "`files_storage_full`: the file store holds SWITCHYARD_FILES_BUCKET_BYTES; "
            "`organization_files_full`: the organisation's files would pass SWITCHYARD_FILES_ORG_BYTES, or "
            "it has SWITCHYARD_FILES_ORG_COUNT files"
        ),
    },
)
async def create_file(request: Request, response: Response) -> FileObject:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    try:
        response.headers.update(await requests_admitted(gw.admission.limiter, principal))
        stored = await _store(request, gw, principal.tenant_id)
    except APIError as exc:
        FILE_UPLOADS_REFUSED.labels(exc.code).inc()
        raise
    log.info("file %s stored: %d bytes for tenant %s", stored.id, stored.bytes, principal.tenant_id)
    return stored


async def _store(request: Request, gw: Gateway, tenant_id: str) -> FileObject:
    """The upload read, checked and stored; expiring as asked, else after SWITCHYARD_FILES_BATCH_EXPIRES_S."""
    settings = gw.settings
    sent = await upload.read(request, limit=settings.files_max_bytes)
    try:
        max_line = upload.max_line_bytes(settings.max_body_bytes)
        await asyncio.to_thread(upload.check_batch_input, sent.filename, sent.file.file, max_line=max_line)
        await Share.of(settings).check(
            gw.files, tenant_id, adding=sent.file.size or 0, then="delete files you no longer need"
        )
        return await gw.files.put(
            tenant_id=tenant_id,
            purpose="batch",
            filename=sent.filename,
            data=sent.file.file,
            expires_after_s=sent.expires_after_s or settings.files_batch_expires_s or None,
        )
    except FilesFull as exc:
        log.warning("an upload of %s bytes refused: %s", sent.file.size, exc.code)
        raise
    finally:
        await sent.form.close()


@router.get("", response_model=FileList, summary="The organisation's files, newest first by default")
async def list_files(request: Request) -> FileList:
    files, tenant_id = await _files_of(request)
    query = request.query_params
    purpose = query.get("purpose")
    if purpose is not None and purpose not in ("batch", "batch_output", *upload.OPENAI_PURPOSES):
        raise InvalidRequest(
            f"purpose: {purpose[:40]!r} is not a purpose", code="invalid_value", param="purpose"
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order: `asc` or `desc`", code="invalid_value", param="order")
    page, has_more = await files.list(
        tenant_id=tenant_id,
        purpose=purpose,
        limit=_limit(query.get("limit")),
        after=query.get("after") or None,
        order=_order(order),
    )
    return FileList(
        data=page,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=has_more,
    )


@router.get(
    "/{file_id}",
    response_model=FileObject,
    summary="A file's description",
    responses=NOT_FOUND,
)
async def retrieve_file(file_id: str, request: Request) -> FileObject:
    files, tenant_id = await _files_of(request)
    return await files.get(tenant_id=tenant_id, file_id=file_id)


@router.get(
    "/{file_id}/content",
    summary="A file's bytes",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file as it was stored"},
        **NOT_FOUND,
    },
)
async def file_content(file_id: str, request: Request) -> Response:
    files, tenant_id = await _files_of(request)
    file, chunks = await files.open(tenant_id=tenant_id, file_id=file_id)
    headers = {"content-length": str(file.bytes)}  # a cut stream (the file vanished) shows short
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.delete(
    "/{file_id}",
    response_model=FileDeleted,
    summary="Delete a file",
    responses=NOT_FOUND,
)
async def delete_file(file_id: str, request: Request) -> FileDeleted:
    files, tenant_id = await _files_of(request)
    deleted = await files.delete(tenant_id=tenant_id, file_id=file_id)
    log.info("file %s deleted for tenant %s", file_id, tenant_id)
    return FileDeleted(id=file_id, deleted=deleted)


async def _files_of(request: Request) -> tuple[FileStore, str]:
    """The file store and the caller's organisation (any key that may run inference)."""
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    return gw.files, principal.tenant_id


def _limit(raw: str | None) -> int:
    if raw is None:
        return MAX_LIST
    if not upload.digits(raw) or not 1 <= int(raw) <= MAX_LIST:
        raise InvalidRequest(f"limit: an integer from 1 to {MAX_LIST}", code="invalid_value", param="limit")
    return int(raw)


def _order(raw: str) -> Literal["asc", "desc"]:
    return "asc" if raw == "asc" else "desc"
