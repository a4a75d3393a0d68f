"""A request's body as every face reads it: its bytes within a size limit (`read_body`, or as they arrive:
`body_chunks`), the JSON object it must be (`json_object`), and that object validated as a face's request
model (`validated`), each refusal a specific 400 or 413."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from switchyard.gateway import bounds
from switchyard.gateway.config import MAX_BODY_SETTING, GatewaySettings
from switchyard.gateway.errors import InvalidRequest, RequestTooLarge, invalid_fields
from switchyard.gateway.schemas import UNSUPPORTED, Unsupported, refuse_unsupported

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, *, limit: int, setting: str | None) -> bytes:
    """The body, up to `limit` bytes (413 `request_too_large` past it, naming `setting`, the setting that
    sets this limit: `MAX_BODY_SETTING` for `max_body_bytes`; None for a fixed limit)."""
    return b"".join([part async for part in body_chunks(request, limit=limit, setting=setting)])


async def body_chunks(request: Request, *, limit: int, setting: str | None) -> AsyncIterator[bytes]:
    """The body as it arrives, `read_body`'s checks made as it goes: 413 at once when Content-Length says
    it is over `limit`, else as soon as more than `limit` bytes have come."""
    named = f" ({setting})" if setting else ""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit} bytes{named}")
    size = 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise RequestTooLarge(f"Request body exceeds the limit of {limit} bytes{named}")
            yield part
    except ClientDisconnect as exc:
        raise InvalidRequest(
            "the client disconnected while sending the body", code="client_disconnected"
        ) from exc


async def read_request_body(request: Request, settings: GatewaySettings) -> bytes:
    """A request's body, up to `SWITCHYARD_MAX_BODY_BYTES`."""
    return await read_body(request, limit=settings.max_body_bytes, setting=MAX_BODY_SETTING)


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as the JSON object it must be (400 `invalid_json` otherwise)."""
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object", code="invalid_json")
    try:
        with bounds.collector_paused():
            raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(raw, dict):
        raise InvalidRequest("Request body must be a JSON object", code="invalid_json")
    return raw


def validated(body: bytes | dict[str, Any], model: type[M], unsupported: Unsupported = UNSUPPORTED) -> M:
    """A request body read as `model`: a JSON object (400 `invalid_json`; a dict: the object already read),
    with no field that asks for what is not delivered (400 `unsupported_parameter`), valid (400 naming each
    field)."""
    raw = body if isinstance(body, dict) else json_object(body)
    refuse_unsupported(raw, unsupported)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_fields(exc.errors()) from exc
