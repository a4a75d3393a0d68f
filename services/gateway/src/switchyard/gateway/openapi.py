"""Error responses declared on every endpoint, so the OpenAPI document says what a client can get back."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = Field(
        description="our error code; null where OpenAI's own body has none for the same refusal (tool calls "
        "left unanswered, on the OpenAI faces)"
    )
    param: str | None = None
    request_id: str


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint (as OpenAI's)."""

    error: ErrorDetail


class AnthropicErrorResponse(BaseModel):
    """The Anthropic endpoint's error shape (Anthropic's): `error.type` is Anthropic's type name
    (`invalid_request_error`, `authentication_error`, `not_found_error`, `rate_limit_error`, ...)."""

    type: Literal["error"] = "error"
    error: ErrorDetail
    request_id: str


class GoogleErrorInfo(BaseModel):
    """`google.rpc.ErrorInfo`: Switchyard's code in `reason` (upper case), and in `metadata` its code,
    type, request id and the field (`param`) when one is named."""

    type_url: str = Field(alias="@type")
    reason: str
    domain: str
    metadata: dict[str, str]


class GoogleStatus(BaseModel):
    code: int
    message: str
    status: str  # google.rpc.Code's name: INVALID_ARGUMENT, UNAUTHENTICATED, NOT_FOUND, ...
    details: list[GoogleErrorInfo]


class GoogleErrorResponse(BaseModel):
    """The Gemini face's error shape (Google's)."""

    error: GoogleStatus


def error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_doc("Invalid request (malformed JSON, missing or invalid fields)"),
    401: error_doc(
        "Missing, unknown, expired or revoked credential. Codes: `missing_api_key`, `invalid_api_key`; "
        "for OIDC tokens `invalid_token`, `token_expired`, `token_not_yet_valid`, `token_issuer_invalid`, "
        "`token_audience_invalid`, `token_signature_invalid`, `token_algorithm_not_allowed`, "
        "`token_key_unknown`, `token_claims_invalid`, `token_email_unverified`, `token_role_invalid`, "
        "`unknown_organization`, `organization_closed`, `unknown_user`, `user_disabled`, "
        "`token_subject_mismatch`"
    ),
    403: error_doc(
        "The credential lacks the scope or role this needs (`key_wider_than_caller`: a key it would make, "
        "change or rotate would be wider than it)"
    ),
    404: error_doc("Not found (also: a resource of another organisation)"),
    409: error_doc("Conflict with an existing resource"),
    429: error_doc(
        "Too many failed authentication attempts from this client address or against this key prefix "
        "(code `too_many_auth_failures`; see Retry-After)"
    ),
    503: error_doc(
        "The identity provider's keys are unavailable (code `identity_provider_unavailable`), or the "
        "message bus is briefly unavailable (`bus_unavailable`, see Retry-After)"
    ),
}
INFERENCE_ERRORS: dict[int | str, dict[str, Any]] = {
    **{k: v for k, v in ERRORS.items() if k != 409},
    400: error_doc(
        "Invalid request (malformed JSON, missing or invalid fields), or refused by a guardrail: "
        "`prompt_injection_detected`, `pii_detected`"
    ),
    413: error_doc(
        "Body or prompt too large (`request_too_large`, `prompt_too_large`: also a plan's guardrail), or "
        "the request's task larger than the message bus carries (`bus_max_payload_exceeded`)"
    ),
    429: error_doc(
        "Rate limit, quota or budget exceeded (see Retry-After and x-ratelimit-* headers), or too many "
        "failed authentication attempts (`too_many_auth_failures`)"
    ),
    502: error_doc("Every candidate model failed"),
    503: error_doc(
        "No provider is available, the message bus is briefly unavailable (`bus_unavailable`, retry after "
        "Retry-After), or the identity provider's keys are unavailable"
    ),
    504: error_doc("The task did not finish in time"),
}

EMBEDDING_ERRORS: dict[int | str, dict[str, Any]] = {
    **INFERENCE_ERRORS,
    400: error_doc(
        "Invalid request (malformed JSON, missing or invalid fields; `invalid_value` naming `dimensions` for "
        "a length the model cannot give, `input` for more vectors than one answer holds), "
        "`model_lacks_capability` (`auto` or a chat model: embeddings need an embedding model), or "
        "refused by a guardrail: `pii_detected`"
    ),
    413: error_doc(
        "Body or an input too large (`request_too_large`, `prompt_too_large`: also a plan's guardrail), or "
        "the task larger than the message bus carries (`bus_max_payload_exceeded`)"
    ),
}


# The same errors in Anthropic's shape, for `/v1/messages`.
ANTHROPIC_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**spec, "model": AnthropicErrorResponse} for status, spec in INFERENCE_ERRORS.items()
}
# And in Google's, for the Gemini face.
GOOGLE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**spec, "model": GoogleErrorResponse} for status, spec in INFERENCE_ERRORS.items()
}


def _response(spec: dict[str, Any]) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    return {"description": spec["description"], "content": {"application/json": {"schema": ref}}}


def install(app: FastAPI) -> None:
    """Views that read the raw body declare its schema via `openapi_extra` with their nested models under
    `x-schemas`; this moves those into `components/schemas`, where the references point."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for path in doc.get("paths", {}).values():
                for operation in path.values():
                    schemas.update(operation.pop("x-schemas", {}))
                    # Validation errors are answered 400 in the one error model, never FastAPI's 422.
                    if operation.get("responses", {}).pop("422", None) is not None:
                        operation["responses"].setdefault("400", _response(ERRORS[400]))
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
