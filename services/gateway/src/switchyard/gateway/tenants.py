"""Tenants and API keys: creation, verification and the development bootstrap."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from switchyard.common.ids import new_id
from switchyard.gateway import keys
from switchyard.gateway.models import ApiKey, Tenant

DEV_TENANT = "dev"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    api_key_id: str
    user_id: str | None
    key_prefix: str


async def create_tenant(sessions: async_sessionmaker, *, name: str, plan: str = "free") -> Tenant:  # type: ignore[type-arg]
    tenant = Tenant(id=new_id()[:16], name=name, plan=plan, created_at=datetime.now(UTC))
    async with sessions.begin() as s:
        s.add(tenant)
    return tenant


async def create_api_key(
    sessions: async_sessionmaker,  # type: ignore[type-arg]
    *,
    tenant_id: str,
    name: str,
    user_id: str | None = None,
) -> tuple[str, ApiKey]:
    """Creates a key; the plaintext is returned once and never stored."""
    plaintext, prefix = keys.generate()
    row = ApiKey(
        id=new_id()[:16],
        tenant_id=tenant_id,
        user_id=user_id,
        name=name,
        prefix=prefix,
        key_hash=keys.hash_key(plaintext),
        created_at=datetime.now(UTC),
    )
    async with sessions.begin() as s:
        s.add(row)
    return plaintext, row


class KeyVerifier:
    """Verifies presented keys against the database, caching hits briefly (and never the plaintext)."""

    def __init__(self, sessions: async_sessionmaker, *, ttl_s: float = 30.0) -> None:  # type: ignore[type-arg]
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def verify(self, presented: str) -> Principal | None:
        prefix = keys.parse_prefix(presented)
        if prefix is None:
            return None
        digest = keys.hash_key(presented)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        async with self._sessions() as s:
            row = (await s.execute(select(ApiKey).where(ApiKey.prefix == prefix))).scalar_one_or_none()
        if row is None or row.revoked_at is not None or not keys.matches(presented, row.key_hash):
            self._cache.pop(digest, None)
            return None
        principal = Principal(
            tenant_id=row.tenant_id, api_key_id=row.id, user_id=row.user_id, key_prefix=prefix
        )
        self._cache[digest] = (now, principal)
        return principal


async def ensure_dev_tenant(sessions: async_sessionmaker, *, key_file: Path) -> bool:  # type: ignore[type-arg]
    """On the first embedded run: a development tenant and key, the key written to `key_file` (0600).

    Returns True when it created them. A later run keeps both (the key file is the only copy of the key).
    """
    async with sessions() as s:
        tenant = (await s.execute(select(Tenant).where(Tenant.name == DEV_TENANT))).scalar_one_or_none()
    if tenant is not None and key_file.exists():
        return False
    if tenant is None:
        tenant = await create_tenant(sessions, name=DEV_TENANT, plan="enterprise")
    plaintext, _ = await create_api_key(sessions, tenant_id=tenant.id, name="development key", user_id="dev")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(plaintext + "\n")
    return True
