"""Authentication and authorisation by scope.

A credential comes as `Authorization: Bearer <credential>` (as OpenAI SDKs send it), `x-api-key` (as
Anthropic's do) or `x-goog-api-key` (Google's GenAI SDKs; on the Gemini face also as Gemini's `?key=`).
It is an API key (`sy_<prefix>_<secret>`), or, when SSO is configured, an OIDC JWT from the
organisation's identity provider; both yield the same `Principal`. Repeated failures from one client
or against one key prefix are throttled (access/lockout.py) and every failure is recorded; while a
prefix is blocked, a wrong key with it is refused before it costs a database query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from switchyard.gateway import keys
from switchyard.gateway.access.actor import Actor
from switchyard.gateway.access.lockout import Attempt, Credential
from switchyard.gateway.access.oidc import TokenRejected, looks_like_jwt
from switchyard.gateway.access.oidc_keys import JwksUnavailable
from switchyard.gateway.errors import (
    AuthenticationFailed,
    PermissionDenied,
    ServiceUnavailable,
    request_id_of,
)
from switchyard.gateway.errors_faces import google_face
from switchyard.gateway.state import Gateway, gateway_of
from switchyard.gateway.tenants import KeyVerifier, Principal


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key") or request.headers.get("x-goog-api-key")
    if key is None and google_face(request.url.path, keyed=False, method=request.method):
        key = request.query_params.get("key")  # Gemini's REST form (`?key=`); never logged: no access log
    return key or None


def _attempt(request: Request, credential: str | None, gw: Gateway | None) -> Attempt:
    kind: Credential
    prefix: str | None
    if credential is None:
        kind, prefix = "none", None
    elif gw is not None and gw.sso is not None and looks_like_jwt(credential):
        kind, prefix = "jwt", None
    else:
        kind, prefix = "api_key", keys.parse_prefix(credential)
    client = request.client.host if request.client is not None else "unknown"
    return Attempt(client, kind, prefix, request.url.path, request_id_of(request))


async def _verify(
    attempt: Attempt, credential: str | None, verifier: KeyVerifier, gw: Gateway | None
) -> Principal:
    if credential is None:
        raise AuthenticationFailed(
            "Missing API key: send it as `Authorization: Bearer <key>` (or `x-api-key`, `x-goog-api-key`)",
            code="missing_api_key",
        )
    if attempt.credential == "jwt":
        assert gw is not None and gw.sso is not None
        try:
            return await gw.sso.verify(credential)
        except TokenRejected as exc:
            raise AuthenticationFailed(exc.message, code=exc.code) from None
        except JwksUnavailable as exc:
            raise ServiceUnavailable(
                "The identity provider's signing keys are unavailable; try again",
                code="identity_provider_unavailable",
                headers={"retry-after": "5"},
                retry=True,
            ) from exc
    principal = await verifier.verify(credential)
    if principal is None:
        raise AuthenticationFailed("Invalid API key", code="invalid_api_key")
    return principal


async def authenticate(
    request: Request, verifier: KeyVerifier, *, scope: str | None = "inference"
) -> Principal:
    gw: Gateway | None = getattr(request.app.state, "gateway", None)
    credential = presented_key(request)
    attempt = _attempt(request, credential, gw)
    lockout = gw.lockout if gw is not None else None
    if lockout is not None:
        await lockout.check(attempt)
    try:
        if lockout is not None and attempt.key_prefix and lockout.blocks_prefix(attempt.key_prefix):
            assert credential is not None
            if not await verifier.could_be(credential):  # a guess: refused (429) without a query
                raise AuthenticationFailed("Invalid API key", code="invalid_api_key")
        principal = await _verify(attempt, credential, verifier, gw)
    except AuthenticationFailed as exc:
        if lockout is not None:
            await lockout.failed(attempt, reason=exc.code)
        raise
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
