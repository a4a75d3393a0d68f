"""Who is calling: the principal a credential maps to, API-key verification with a short cache, and the
development bootstrap."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import false, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.common import db
from switchyard.common.ids import new_id
from switchyard.gateway import keys
from switchyard.gateway.access import roles
from switchyard.gateway.key_policy import KeyPolicy
from switchyard.gateway.models import ApiKey, Tenant, User

log = logging.getLogger(__name__)

DEV_TENANT = "dev"
DEV_USER = "dev"
KEEP_HASHES = 10_000  # prefixes whose key's hash `KeyVerifier.could_be` remembers
# How long after its last load a cached key is still served while the database cannot be reached (a
# failover, a restart, an outage): a revocation needs the database, and its announcement drops the entry.
STALE_WHILE_UNREACHABLE_S = 3600.0
STALE_LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    api_key_id: str
    user_id: str | None
    key_prefix: str
    role: str = "member"
    scopes: frozenset[str] = frozenset({roles.INFERENCE})
    plan: str = "free"  # the user's plan (else the organisation's): sets the daily budget
    org_monthly_budget_usd: float | None = None
    platform: bool = False
    expires_at: datetime | None = None
    key_policy: KeyPolicy | None = None  # the key's models, limits and budget; None: it has none
    key_lineage: str | None = None  # the first key this one was rotated from (`counts_as`)
    # The keys that minted this one, by their lineages' ids, nearest first (`ApiKey.ancestors`), and the
    # policies of those that have one now: (lineage id, policy). Its requests count against their budgets
    # and rate limits too.
    key_ancestors: tuple[str, ...] = ()
    ancestor_policies: tuple[tuple[str, KeyPolicy], ...] = ()

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def counts_as(self) -> str:
        """The id the key's own counters (its budget, its limits) are kept under: the first key of its
        rotations, so rotating a key does not start them afresh."""
        return self.key_lineage or self.api_key_id

    @property
    def from_token(self) -> bool:
        """Whether the credential is an identity provider's token (SSO), not an API key."""
        return self.api_key_id.startswith("jwt:")

    @property
    def subject(self) -> str:
        """Whom per-user limits count against: the user, or the key (its lineage) for a key without a
        user."""
        return self.user_id or f"key-{self.counts_as}"


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def expired(expires_at: datetime | None) -> bool:
    """Whether a key with this expiry (none: never) has expired."""
    at = aware(expires_at)
    return at is not None and at <= datetime.now(UTC)


async def create_tenant(
    sessions: async_sessionmaker[AsyncSession],
    *,
    name: str,
    plan: str = "free",
    platform: bool = False,
    monthly_budget_usd: float | None = None,
) -> Tenant:
    tenant = Tenant(
        id=new_id()[:16],
        name=name,
        plan=plan,
        platform=platform,
        monthly_budget_usd=monthly_budget_usd,
        created_at=datetime.now(UTC),
    )
    async with sessions.begin() as s:
        s.add(tenant)
    return tenant


def _user(
    *,
    tenant_id: str,
    email: str,
    role: str,
    name: str,
    plan: str | None,
    user_id: str | None,
    oidc: tuple[str, str] | None = None,
) -> User:
    return User(
        id=user_id or f"usr_{new_id()[:16]}",
        tenant_id=tenant_id,
        email=email,
        name=name,
        role=role,
        plan=plan,
        created_at=datetime.now(UTC),
        oidc_issuer=oidc[0] if oidc else None,
        oidc_subject=oidc[1] if oidc else None,
    )


async def create_user(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant_id: str,
    email: str,
    role: str,
    name: str = "",
    plan: str | None = None,
    user_id: str | None = None,
    oidc: tuple[str, str] | None = None,
) -> User:
    """`oidc`: the identity-provider account (issuer, subject) the user is bound to (single sign-on's)."""
    user = _user(
        tenant_id=tenant_id, email=email, role=role, name=name, plan=plan, user_id=user_id, oidc=oidc
    )
    async with sessions.begin() as s:
        s.add(user)
    return user


async def create_api_key(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant_id: str,
    name: str,
    user_id: str | None = None,
    scopes: str = "inference admin audit:read billing:read",
    expires_at: datetime | None = None,
    policy: dict[str, object] | None = None,
    lineage_id: str | None = None,
    ancestors: Sequence[str] = (),
) -> tuple[str, ApiKey]:
    """Creates a key; the plaintext is returned once and never stored. `policy`: its policy columns
    (`ApiKey.POLICY`), those left out unset; `lineage_id`: the first key of the rotations it ends;
    `ancestors`: the keys that minted it (`ApiKey.ancestors`)."""
    plaintext, row = _api_key(
        tenant_id=tenant_id,
        name=name,
        user_id=user_id,
        scopes=scopes,
        expires_at=expires_at,
        policy=policy,
        lineage_id=lineage_id,
    )
    row.ancestors = list(ancestors) or None
    async with sessions.begin() as s:
        s.add(row)
    return plaintext, row


def _api_key(
    *,
    tenant_id: str,
    name: str,
    user_id: str | None,
    scopes: str,
    expires_at: datetime | None = None,
    policy: dict[str, object] | None = None,
    lineage_id: str | None = None,
) -> tuple[str, ApiKey]:
    plaintext, prefix = keys.generate()
    row = ApiKey(
        id=f"key_{new_id()[:16]}",
        tenant_id=tenant_id,
        user_id=user_id,
        name=name,
        prefix=prefix,
        key_hash=keys.hash_key(plaintext),
        scopes=scopes,
        expires_at=expires_at,
        created_at=datetime.now(UTC),
        lineage_id=lineage_id,
        **(policy or {}),
    )
    return plaintext, row


@dataclass
class _Cached:
    at: float
    principal: Principal


@dataclass
class _Index:
    """Which cached digests belong to a key, a user or an organisation, to drop them on a change."""

    by_id: dict[str, set[str]] = field(default_factory=dict)

    def add(self, ident: str, digest: str) -> None:
        self.by_id.setdefault(ident, set()).add(digest)

    def pop(self, ident: str) -> set[str]:
        return self.by_id.pop(ident, set())


class KeyVerifier:
    """Verifies presented keys against the database, caching hits briefly (and never the plaintext).

    A revocation, expiry, disabled user or role change is seen at once on every replica: the admin API
    announces each change on the bus and `invalidate` drops the cached entries (see access/changes.py);
    the TTL only bounds how long a missed announcement could matter.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: float = 30.0,
        loaded: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        """`loaded(tenant id, name)`: hears each organisation a key was loaded for (the tenant registry)."""
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._loaded = loaded
        self._cache: dict[str, _Cached] = {}
        self._index = _Index()
        self._hashes: dict[str, str | None] = {}  # prefix -> its key's hash (None: no key), `could_be`
        self._stale_logged_at = -STALE_LOG_EVERY_S

    def invalidate(self, kind: str, ident: str) -> None:
        for digest in self._index.pop(f"{kind}.{ident}"):
            self._cache.pop(digest, None)

    async def verify(self, presented: str) -> Principal | None:
        prefix = keys.parse_prefix(presented)
        if prefix is None:
            return None
        digest = keys.hash_key(presented)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and expired(hit.principal.expires_at):
            self._cache.pop(digest, None)
            hit = None
        if hit is not None and now - hit.at < self._ttl_s:
            return hit.principal
        try:
            principal = await self._load(presented, prefix)
        except Exception as exc:
            # The database out of reach: a key verified here before (and not dropped by an announcement
            # meanwhile) is served still, so a replica goes on serving its tenants through an outage.
            if hit is None or self._cache.get(digest) is not hit or not db.unreachable(exc):
                raise
            if now - hit.at >= STALE_WHILE_UNREACHABLE_S:
                raise
            self._served_stale(exc)
            return hit.principal
        self._cache.pop(digest, None)
        if principal is not None:
            self._cache[digest] = _Cached(now, principal)
            for kind, ident in (
                ("key", principal.api_key_id),
                ("user", principal.user_id),
                ("org", principal.tenant_id),
                *(("key", ancestor) for ancestor in principal.key_ancestors),
            ):
                if ident:
                    self._index.add(f"{kind}.{ident}", digest)
        return principal

    def _served_stale(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._stale_logged_at >= STALE_LOG_EVERY_S:
            self._stale_logged_at = now
            log.warning(
                "the database cannot be reached (%s): serving the keys it verified before, up to %.0f s "
                "after their last check; keys not seen before are refused (503)",
                type(exc).__name__,
                STALE_WHILE_UNREACHABLE_S,
            )

    async def could_be(self, presented: str) -> bool:
        """Whether `presented` is the key its prefix names (revoked or not): one query per prefix, then
        none. While a prefix is blocked, wrong keys with it are refused on this, not on a query each."""
        prefix = keys.parse_prefix(presented)
        if prefix is None:
            return False
        if prefix not in self._hashes:
            if len(self._hashes) >= KEEP_HASHES:
                self._hashes.clear()
            async with self._sessions() as s:
                stored = await s.scalar(select(ApiKey.key_hash).where(ApiKey.prefix == prefix))
            self._hashes[prefix] = stored
        stored = self._hashes[prefix]
        return stored is not None and keys.matches(presented, stored)

    async def _load(self, presented: str, prefix: str) -> Principal | None:
        query = (
            select(ApiKey, Tenant, User)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .outerjoin(User, (User.id == ApiKey.user_id) & (User.tenant_id == ApiKey.tenant_id))
            .where(ApiKey.prefix == prefix)
        )
        async with self._sessions() as s:
            row = (await s.execute(query)).one_or_none()
        if row is None:
            return None
        key, tenant, user = row
        expires_at = aware(key.expires_at)
        if key.revoked_at is not None or not keys.matches(presented, key.key_hash):
            return None
        if expired(expires_at):
            return None
        if user is not None and user.disabled_at is not None:
            return None
        if self._loaded is not None:
            try:
                await self._loaded(tenant.id, tenant.name)
            except Exception as exc:  # the key is good; the registry's sync writes its organisation later
                log.warning("could not register organisation %s: %s: %s", tenant.id, type(exc).__name__, exc)
        role = user.role if user is not None else roles.SERVICE_KEY_ROLE
        return Principal(
            tenant_id=key.tenant_id,
            api_key_id=key.id,
            user_id=key.user_id,
            key_prefix=prefix,
            role=role,
            scopes=roles.effective_scopes(role, key.scopes),
            plan=roles.plan_of(user.plan if user is not None else None, tenant.plan),
            org_monthly_budget_usd=tenant.monthly_budget_usd,
            platform=tenant.platform,
            expires_at=expires_at,
            key_policy=key.policy(),
            key_lineage=key.lineage_id,
            key_ancestors=tuple(key.ancestors or ()),
            ancestor_policies=await self._ancestor_policies(key),
        )

    async def _ancestor_policies(self, key: ApiKey) -> tuple[tuple[str, KeyPolicy], ...]:
        """The policies of the keys that minted `key` (`ApiKey.ancestors`), each as its lineage's newest
        key has it now (a rotation keeps the lineage; a revoked minter's limits still bind what it
        minted)."""
        if not key.ancestors:
            return ()
        lineage = func.coalesce(ApiKey.lineage_id, ApiKey.id)
        query = (
            select(ApiKey)
            .where(ApiKey.tenant_id == key.tenant_id, lineage.in_(key.ancestors))
            .order_by(ApiKey.created_at)
        )
        async with self._sessions() as s:
            newest = {row.counts_as: row for row in (await s.execute(query)).scalars()}
        found = []
        for ancestor in key.ancestors:
            policy = None if ancestor not in newest else newest[ancestor].policy()
            if policy is not None:
                found.append((ancestor, policy))
        return tuple(found)


async def ensure_dev_tenant(sessions: async_sessionmaker[AsyncSession], *, key_file: Path) -> bool:
    """On the first embedded run: a development organisation (the platform's own), its admin user and
    an admin key, the key written to `key_file` (0600).

    Returns True when it created the key. A later run keeps it (the key file is the only copy of the key).
    """
    async with sessions() as s:
        tenant = (await s.execute(select(Tenant).where(Tenant.name == DEV_TENANT))).scalar_one_or_none()
        user = await s.get(User, DEV_USER)
    if tenant is not None and key_file.exists():
        return False
    if tenant is None:
        tenant = await create_tenant(sessions, name=DEV_TENANT, plan="enterprise", platform=True)
    if user is None:
        await create_user(
            sessions,
            tenant_id=tenant.id,
            email="dev@localhost",
            name="Developer",
            role="admin",
            user_id=DEV_USER,
        )
    plaintext, _ = await create_api_key(
        sessions, tenant_id=tenant.id, name="development key", user_id=DEV_USER
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(plaintext + "\n")
    return True


async def dev_tenant_id(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    """The development organisation's id (`ensure_dev_tenant`), None before it is made."""
    async with sessions() as s:
        found = await s.execute(select(Tenant.id).where(Tenant.name == DEV_TENANT))
    return found.scalar_one_or_none()


class PlatformExists(Exception):
    """The platform's organisation exists: its admins make keys (`switchyard keys create`)."""


async def bootstrap_platform(
    sessions: async_sessionmaker[AsyncSession], *, name: str, email: str
) -> tuple[Tenant, str]:
    """A deployment's first admin key, where no `switchyard up` made one (compose, Kubernetes): the
    platform's own organisation, its first admin user and an admin key, whose plaintext is returned once.
    Refused (PlatformExists) once there is a platform organisation, so it mints no key on a deployment
    already set up. One transaction, and one bootstrap at a time (`_one_at_a_time`): two run at the same
    instant made two platform organisations and two first admin keys, and one cut half-way left an
    organisation with no key that refused every later run."""
    async with sessions.begin() as s:
        await _one_at_a_time(s)
        found = (await s.execute(select(Tenant).where(Tenant.platform.is_(True)))).scalars().first()
        if found is not None:
            raise PlatformExists(found.name)
        tenant = Tenant(
            id=new_id()[:16], name=name, plan="enterprise", platform=True, created_at=datetime.now(UTC)
        )
        admin = _user(tenant_id=tenant.id, email=email, role="admin", name="", plan=None, user_id=None)
        plaintext, key = _api_key(
            tenant_id=tenant.id,
            name="first admin key",
            user_id=admin.id,
            scopes=roles.default_scopes("admin"),
        )
        s.add(tenant)
        await s.flush()  # the rows each refers to first
        s.add(admin)
        await s.flush()
        s.add(key)
    return tenant, plaintext


BOOTSTRAP_LOCK = 0x5357_4254  # "SWBT": PostgreSQL's advisory lock for `bootstrap_platform`


async def _one_at_a_time(s: AsyncSession) -> None:
    """Takes the lock that makes concurrent bootstraps wait for each other until this transaction ends:
    PostgreSQL's transaction-level advisory lock; on SQLite, a write first, which takes the database's
    write lock (another writer waits on the busy timeout, then reads what this one committed)."""
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOTSTRAP_LOCK})
    else:
        await s.execute(update(Tenant).where(false()).values(platform=True))


def expiry_in(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.now(UTC) + timedelta(seconds=seconds)
