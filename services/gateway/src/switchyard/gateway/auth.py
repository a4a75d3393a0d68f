"""Authentication (`Authorization: Bearer <key>` as OpenAI SDKs send it, or `x-api-key` as Anthropic's)
and authorisation by scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from switchyard.gateway.access.actor import Actor
from switchyard.gateway.errors import AuthenticationFailed, PermissionDenied, request_id_of
from switchyard.gateway.state import gateway_of
from switchyard.gateway.tenants import KeyVerifier, Principal


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


async def authenticate(
    request: Request, verifier: KeyVerifier, *, scope: str | None = "inference"
) -> Principal:
    key = presented_key(request)
    if key is None:
        raise AuthenticationFailed(
            "Missing API key: send it as `Authorization: Bearer <key>`", code="missing_api_key"
        )
    principal = await verifier.verify(key)
    if principal is None:
        raise AuthenticationFailed("Invalid API key", code="invalid_api_key")
    if scope is not None and not principal.can(scope):
        raise PermissionDenied(f"this key lacks the scope {scope!r} (role {principal.role!r})")
    return principal


def require(*scopes: str, platform: bool = False) -> Callable[[Request], Awaitable[Actor]]:
    """A dependency: the caller, who must hold one of `scopes` (and belong to the platform organisation)."""

    async def dependency(request: Request) -> Actor:
        gw = gateway_of(request)
        principal = await authenticate(request, gw.verifier, scope=None)
        if not any(principal.can(s) for s in scopes):
            raise PermissionDenied(
                f"this needs one of the scopes {list(scopes)} (your role: {principal.role})"
            )
        if platform and not principal.platform:
            raise PermissionDenied("only the platform operator's organisation may do this")
        return Actor(principal, gw.sessions, gw.changes, gw.events, request_id_of(request))

    return dependency
