"""API-key authentication: `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs)."""

from __future__ import annotations

from fastapi import Request

from switchyard.gateway.errors import AuthenticationFailed
from switchyard.gateway.tenants import KeyVerifier, Principal


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


async def authenticate(request: Request, verifier: KeyVerifier) -> Principal:
    key = presented_key(request)
    if key is None:
        raise AuthenticationFailed(
            "Missing API key: send it as `Authorization: Bearer <key>`", code="missing_api_key"
        )
    principal = await verifier.verify(key)
    if principal is None:
        raise AuthenticationFailed("Invalid API key", code="invalid_api_key")
    return principal
