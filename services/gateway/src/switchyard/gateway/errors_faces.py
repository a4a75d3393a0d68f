"""Which face a request speaks (OpenAI's, Anthropic's or Google's shapes: its errors are answered in them,
`errors.error_response`) and Google's error object, which the Gemini face's error bodies and stream error
events share."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

# Paths both SDKs call: there the `anthropic-version` header, which the Anthropic SDKs send on every request
# and OpenAI's never, picks Anthropic's shape (as LiteLLM-style gateways tell the two apart).
SHARED_PATHS = ("/v1/models",)


def anthropic_face(path: str, *, versioned: bool) -> bool:
    """Whether a request for `path` is answered in Anthropic's shapes: `/v1/messages...`, or a shared path
    asked with an `anthropic-version` header (`versioned`)."""
    if path.startswith("/v1/messages"):
        return True
    shared = any(path == p or path.startswith(f"{p}/") for p in SHARED_PATHS)
    return shared and versioned


def speaks_anthropic(request: Request) -> bool:
    """`anthropic_face` for a request."""
    return anthropic_face(request.url.path, versioned="anthropic-version" in request.headers)


# Gemini's methods: `/v1beta/models/{model}:generateContent` (the Gemini CLI's, and the REST docs'), and the
# same under `/v1` (the Python GenAI SDK's default).
GEMINI_METHOD = re.compile(r"/v1(?:beta)?/models/.+:[A-Za-z]+")
GEMINI_HEADERS = ("x-goog-api-key", "x-goog-api-client")  # sent by Google's GenAI SDKs on every request


def google_face(path: str, *, keyed: bool, method: str) -> bool:
    """Whether a request for `path` is answered in Google's shapes: `/v1beta/...`, a Gemini method (a POST:
    a GET of `/v1/models/{id}` is OpenAI's retrieve, also of an id with a tag, `llama3.2:latest`), or a
    shared path (the models list) asked with a Google SDK's header (`keyed`)."""
    if path.startswith("/v1beta/") or (method == "POST" and GEMINI_METHOD.fullmatch(path)):
        return True
    shared = any(path == p or path.startswith(f"{p}/") for p in SHARED_PATHS)
    return shared and keyed


# Google's detail saying how long to wait before sending again (a 429's), as `retryDelay: "<seconds>s"`
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"

# Google's canonical error codes (google.rpc.Code) by HTTP status, as its APIs answer them.
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def gemini_error(
    *, status: int, message: str, code: str, type_: str, request_id: str, param: str | None = None
) -> dict[str, Any]:
    """Google's error object, under `error` in its error body (`{"error": {"code", "message", "status",
    "details"}}`, which the GenAI SDKs raise as `APIError`) and in a stream's error event alike: Switchyard's
    code, type, field and request id in its `ErrorInfo` detail."""
    metadata = {"code": code, "type": type_, "request_id": request_id, **({"param": param} if param else {})}
    return google_error(status, message, code, metadata)


def google_error(status: int, message: str, code: str, metadata: dict[str, str]) -> dict[str, Any]:
    """The object under `error`: `reason` is Switchyard's code in Google's upper case."""
    detail = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": code.upper(),
        "domain": "switchyard",
        "metadata": metadata,
    }
    return {
        "code": status,
        "message": message,
        "status": GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
        "details": [detail],
    }


def speaks_google(request: Request) -> bool:
    """`google_face` for a request (an `anthropic-version` header says Anthropic's first)."""
    keyed = any(h in request.headers for h in GEMINI_HEADERS)
    face = google_face(request.url.path, keyed=keyed, method=request.method)
    return face and not speaks_anthropic(request)
