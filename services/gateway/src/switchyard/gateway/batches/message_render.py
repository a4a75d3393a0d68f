"""A message batch's results file (Anthropic's Message Batches API), one line per request, in its order:

    {"custom_id": "...", "result": {"type": "succeeded", "message": <the Messages API's answer>}}
    {"custom_id": "...", "result": {"type": "errored", "error": {"type": "error", "error": {...}}}}
    {"custom_id": "...", "result": {"type": "canceled"}}    (or "expired")

The same calls as `render` (the OpenAI batches' output lines), so `Results` writes either shape."""

from __future__ import annotations

import orjson

from switchyard.gateway.batches.models import LineError
from switchyard.gateway.errors import ANTHROPIC_TYPES, APIError, anthropic_wording

UNFINISHED = {"cancelled": "canceled", "expired": "expired"}


def succeeded(batch_id: str, index: int, custom_id: str, *, request_id: str, body: bytes) -> bytes:
    """`body`: the Anthropic face's answer (a Message), kept byte for byte."""
    return _line(custom_id, {"type": "succeeded", "message": orjson.Fragment(body)})


def failed(batch_id: str, index: int, custom_id: str, *, request_id: str, error: LineError) -> bytes:
    """The error POST /v1/messages would have answered, as the Anthropic face says it (`errors.
    error_response`: its type, and its words for a busy provider or a prompt too long; our code, param and
    request id ride along)."""
    status, message = anthropic_wording(APIError(error.message, code=error.code, status=error.status))
    kind = ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    detail = {
        "type": kind,
        "message": message,
        "code": error.code,
        "param": error.param,
        "request_id": request_id,
    }
    return _line(custom_id, {"type": "errored", "error": {"type": "error", "error": detail}})


def unfinished(batch_id: str, index: int, custom_id: str, *, ended: str) -> bytes:
    """A request the batch did not run (`ended`: cancelled or expired)."""
    return _line(custom_id, {"type": UNFINISHED[ended]})


def _line(custom_id: str, result: object) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "result": result}) + b"\n"
