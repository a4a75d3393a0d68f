"""OIDC single sign-on: a bearer JWT from the organisation's identity provider, validated against its
JWKS (signature, issuer, audience, expiry and not-before with a small leeway, an algorithm allow-list that
never includes `none` or HMAC), then mapped to a principal exactly like an API key's: the organisation
from one claim, the role from another, the user by the token's account: its issuer and subject, which the
user is bound to at their first login (matched by email that once, or created on first sight, if enabled).
An email address is the account's to change: a token whose address is a user bound to another account is
refused (`token_subject_mismatch`), so renaming an account to a colleague's address does not log in as them.

Everything downstream (scopes, limits, budgets, tenancy) sees the same `Principal` an API key yields;
its `api_key_id` is `jwt:<sub>` so the audit ledger can tell the credential apart.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.common.bus import EventPublisher
from switchyard.common.events import AdminActionRecorded
from switchyard.common.events.admin import AdminActionName
from switchyard.gateway import tenants
from switchyard.gateway.access import roles
from switchyard.gateway.access.oidc_keys import Jwks
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.models import Tenant, User

ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"})
MAX_SUBJECT = 255  # OIDC Core 2: a `sub` is at most 255 ASCII characters
MISMATCH = "token_subject_mismatch"


class TokenRejected(Exception):
    """The token is not accepted: `code` is the error code of the 401."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    algorithms: frozenset[str] = frozenset({"RS256", "ES256", "EdDSA"})
    leeway_s: float = 30.0
    org_claim: str = "org"
    org_match: str = "name"  # the claim holds the organisation's "name" or its "id"
    role_claim: str = "role"
    default_role: str = "member"
    email_claim: str = "email"
    create_users: bool = False
    link_verified_only: bool = False  # link an existing user by email only with `email_verified: true`

    def __post_init__(self) -> None:
        refused = set(self.algorithms) - ALLOWED_ALGORITHMS
        if refused or not self.algorithms:
            raise ValueError(
                f"OIDC algorithms must be among {sorted(ALLOWED_ALGORITHMS)}; refused {sorted(refused)}"
            )


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("eyJ")


def _role(value: Any, default: str) -> str:
    """The first known role the claim names (a string or a list, as groups claims are)."""
    if value is None:
        return default
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for name in names:
        if isinstance(name, str) and name in roles.ROLES:
            return name
    raise TokenRejected("token_role_invalid", "The token's role claim names no Switchyard role")


@dataclass
class _Cached:
    until: float
    principal: tenants.Principal


@dataclass
class OidcVerifier:
    config: OidcConfig
    jwks: Jwks
    sessions: async_sessionmaker[AsyncSession]
    ttl_s: float = 30.0
    events: EventPublisher | None = None  # records the users created on first sight
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _index: dict[str, set[str]] = field(default_factory=dict)

    def invalidate(self, kind: str, ident: str) -> None:
        for digest in self._index.pop(f"{kind}.{ident}", set()):
            self._cache.pop(digest, None)

    async def verify(self, token: str) -> tenants.Principal:
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(digest)
        if hit is not None and time.monotonic() < hit.until:
            expires = hit.principal.expires_at
            if expires is None or expires.timestamp() + self.config.leeway_s > time.time():
                return hit.principal
        self._cache.pop(digest, None)
        claims = await self.claims(token)
        principal = await self._principal(claims)
        if len(self._cache) > 10_000:
            self._cache.clear()
            self._index.clear()
        self._cache[digest] = _Cached(time.monotonic() + self.ttl_s, principal)
        for key in (f"user.{principal.user_id}", f"org.{principal.tenant_id}"):
            self._index.setdefault(key, set()).add(digest)
        return principal

    async def claims(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature and registered claims are valid."""
        try:
            header = jwt.get_unverified_header(token)
            jwt.decode(token, options={"verify_signature": False})  # well-formed claims, before any key
        except jwt.DecodeError as exc:
            raise TokenRejected("invalid_token", f"The bearer token is not a valid JWT: {exc}") from None
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise TokenRejected(
                "token_algorithm_not_allowed",
                f"The token's algorithm {alg!r} is not accepted (allowed: {sorted(self.config.algorithms)})",
            )
        kid = header.get("kid")
        key = await self.jwks.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise TokenRejected(
                "token_key_unknown", f"The token's signing key {str(kid)[:64]!r} is not the issuer's"
            )
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token_expired", "The token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token_not_yet_valid", "The token is not valid yet (nbf/iat)") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(
                "token_audience_invalid", "The token is not meant for this audience"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("token_issuer_invalid", "The token's issuer is not trusted") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("token_signature_invalid", "The token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("token_claims_invalid", f"The token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRejected(
                "token_algorithm_not_allowed", "The token's algorithm does not match its key"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise TokenRejected("invalid_token", f"The token is invalid: {exc}") from None

    async def _principal(self, claims: dict[str, Any]) -> tenants.Principal:
        cfg = self.config
        org = claims.get(cfg.org_claim)
        email = claims.get(cfg.email_claim)
        if not isinstance(org, str) or not org:
            raise TokenRejected("token_claims_invalid", f"The token lacks the {cfg.org_claim!r} claim")
        if not isinstance(email, str) or "@" not in email:
            raise TokenRejected("token_claims_invalid", f"The token lacks the {cfg.email_claim!r} claim")
        if claims.get("email_verified") in (False, "false"):  # OIDC Core 5.1; some send a string
            raise TokenRejected(
                "token_email_unverified", "The identity provider has not verified the token's email"
            )
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT:
            raise TokenRejected("token_claims_invalid", "The token's 'sub' is not 1 to 255 characters")
        role_claim = claims.get(cfg.role_claim)
        tenant = await self._tenant(org)
        if tenant is None:
            raise TokenRejected("unknown_organization", "The token's organisation is not known here")
        verified = claims.get("email_verified") in (True, "true")
        user = await self._user(
            tenant.id, email, role=_role(role_claim, cfg.default_role), sub=sub, verified=verified
        )
        if user.disabled_at is not None:
            raise TokenRejected("user_disabled", "This user is disabled")
        role = _role(role_claim, user.role)
        return tenants.Principal(
            tenant_id=tenant.id,
            api_key_id=f"jwt:{claims['sub']}"[:64],
            user_id=user.id,
            key_prefix="jwt",
            role=role,
            scopes=roles.ROLE_SCOPES.get(role, frozenset()),
            plan=roles.plan_of(user.plan, tenant.plan),
            org_monthly_budget_usd=tenant.monthly_budget_usd,
            platform=tenant.platform,
            expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),
        )

    async def _tenant(self, org: str) -> Tenant | None:
        column = Tenant.id if self.config.org_match == "id" else Tenant.name
        async with self.sessions() as s:
            return (await s.execute(select(Tenant).where(column == org))).scalar_one_or_none()

    async def _user(self, tenant_id: str, email: str, *, role: str, sub: str, verified: bool) -> User:
        """The user the token's account (issuer, subject) is bound to; else, at the account's first login,
        the organisation's user with its email, bound to it now, or one created for it (if enabled)."""
        issuer = self.config.issuer
        account = select(User).where(User.oidc_issuer == issuer, User.oidc_subject == sub)
        async with self.sessions() as s:
            bound = (await s.execute(account)).scalar_one_or_none()
        if bound is not None:
            if bound.tenant_id != tenant_id:
                raise TokenRejected(MISMATCH, "This identity-provider account is another organisation's user")
            return bound
        query = select(User).where(
            User.tenant_id == tenant_id, or_(User.email == email, User.email == email.lower())
        )
        async with self.sessions() as s:
            user = (await s.execute(query)).scalars().first()
        if user is not None:
            if self.config.link_verified_only and not verified:
                raise TokenRejected(
                    "token_email_unverified",
                    "An existing user is linked to an identity-provider account only by an email the "
                    "provider says it verified (email_verified: true)",
                )
            return await self._link(user, sub=sub)
        if not self.config.create_users:
            raise TokenRejected("unknown_user", "No user with this email in the organisation")
        if await self._closed(tenant_id):
            raise TokenRejected(
                "organization_closed",
                "This organisation is closed (its users are disabled): no user is added",
            )
        try:
            user = await tenants.create_user(
                self.sessions, tenant_id=tenant_id, email=email, role=role, oidc=(issuer, sub)
            )
        except IntegrityError:  # created by a concurrent first request (of this account, or the address's)
            async with self.sessions() as s:
                found = (await s.execute(account)).scalar_one_or_none()
            if found is None or found.tenant_id != tenant_id:
                raise TokenRejected(
                    MISMATCH, "This email belongs to another identity-provider account"
                ) from None
            return found
        await self._record(user, "user.created", sub=sub, changes={"email": user.email, "role": user.role})
        return user

    async def _link(self, user: User, *, sub: str) -> User:
        """Binds `user`, found by the token's email, to the token's account: once, unless an admin unlinks
        them (or the deployment moved to another issuer, whose accounts are new). A user bound to another
        account of this issuer is refused: the address moved to another account, not the person."""
        issuer = self.config.issuer
        if user.oidc_subject is not None and user.oidc_issuer == issuer:
            raise TokenRejected(
                MISMATCH,
                "This email belongs to a user bound to another identity-provider account; an admin can "
                "unlink them (PATCH /v1/admin/users/{id} with oidc_subject: null) if it was replaced",
            )
        stale = or_(User.oidc_subject.is_(None), User.oidc_issuer != issuer)
        try:
            async with self.sessions.begin() as s:
                done = await s.execute(
                    update(User).where(User.id == user.id, stale).values(oidc_issuer=issuer, oidc_subject=sub)
                )
        except IntegrityError:  # the account was bound to another user meanwhile
            raise TokenRejected(MISMATCH, "This identity-provider account is another user's") from None
        if not getattr(done, "rowcount", 0):  # another request bound the user first: to this account?
            async with self.sessions() as s:
                again = await s.get(User, user.id)
            if again is None or (again.oidc_issuer, again.oidc_subject) != (issuer, sub):
                raise TokenRejected(MISMATCH, "This email belongs to another identity-provider account")
            return again
        user.oidc_issuer, user.oidc_subject = issuer, sub
        await self._record(
            user, "user.updated", sub=sub, changes={"oidc_issuer": issuer, "oidc_subject": sub}
        )
        return user

    async def _closed(self, tenant_id: str) -> bool:
        """Whether every user of the organisation is disabled, as its erasure leaves it: nobody may act for
        it any more, so nobody is added to it either (an admin's token would otherwise mint it keys)."""
        users = select(User.id).where(User.tenant_id == tenant_id)
        enabled = users.where(User.disabled_at.is_(None))
        async with self.sessions() as s:
            return bool(await s.scalar(select(and_(users.exists(), ~enabled.exists()))))

    async def _record(
        self, user: User, action: AdminActionName, *, sub: str, changes: dict[str, Any]
    ) -> None:
        """The admin event an admin's change would record (a user created on first sight, an account
        linked), with the token as the actor."""
        if self.events is None:
            return
        event = AdminActionRecorded(
            action=action,
            tenant_id=user.tenant_id,
            actor_key_id=f"jwt:{sub}"[:64],
            target_type="user",
            target_id=user.id,
            changes={**changes, "via": "oidc"},
            at=datetime.now(UTC),
        )
        ident = user.id if action == "user.created" else f"{user.id}/{user.oidc_issuer}/{sub}"
        await self.events.publish(
            event,
            event_id=self.events.derived_id(ident, action, tenant_id=user.tenant_id),
            tenant_id=user.tenant_id,
        )


def from_settings(
    settings: GatewaySettings,
    sessions: async_sessionmaker[AsyncSession],
    events: EventPublisher | None = None,
) -> OidcVerifier | None:
    if not settings.oidc_issuer:
        return None
    if not settings.oidc_audience:
        raise ValueError("SWITCHYARD_OIDC_AUDIENCE must be set with SWITCHYARD_OIDC_ISSUER")
    config = OidcConfig(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        algorithms=frozenset(settings.oidc_algorithms.replace(",", " ").split()),
        leeway_s=settings.oidc_leeway_s,
        org_claim=settings.oidc_org_claim,
        org_match=settings.oidc_org_match,
        role_claim=settings.oidc_role_claim,
        default_role=settings.oidc_default_role,
        email_claim=settings.oidc_email_claim,
        create_users=settings.oidc_create_users,
        link_verified_only=settings.oidc_link_verified_only,
    )
    jwks = Jwks(
        issuer=settings.oidc_issuer,
        url=settings.oidc_jwks_url,
        max_age_s=settings.oidc_jwks_max_age_s,
        min_refresh_s=settings.oidc_jwks_min_refresh_s,
    )
    return OidcVerifier(config, jwks, sessions, ttl_s=settings.auth_cache_ttl_s, events=events)
