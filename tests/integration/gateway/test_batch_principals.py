"""Who a running batch acts as, found again in the database (SQLite and PostgreSQL) from what its record
keeps: the key's principal while the key stands; nothing once the key is revoked or expired, its user
disabled, or it belongs to another organisation; a single sign-on user by their user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.access import service
from switchyard.gateway.batches.principals import resolve
from switchyard.gateway.db import migrations
from switchyard.gateway.models import ApiKey
from switchyard.gateway.tenants import create_api_key, create_tenant, create_user

pytestmark = pytest.mark.integration


async def test_a_batch_acts_as_its_key_while_the_key_stands(db_url: str) -> None:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        org = await create_tenant(sessions, name="acme", plan="pro")
        other = await create_tenant(sessions, name="globex")
        user = await create_user(sessions, tenant_id=org.id, email="m@acme.test", role="member")
        _, key = await create_api_key(sessions, tenant_id=org.id, name="k", user_id=user.id)
        _, service_key = await create_api_key(sessions, tenant_id=org.id, name="svc")

        found = await resolve(sessions, tenant_id=org.id, api_key_id=key.id, user_id=user.id)
        assert found is not None and (found.tenant_id, found.user_id, found.api_key_id) == (
            org.id,
            user.id,
            key.id,
        )
        assert found.plan == "pro" and found.can("inference") and found.key_prefix == key.prefix
        keyed = await resolve(sessions, tenant_id=org.id, api_key_id=service_key.id, user_id=None)
        assert keyed is not None and keyed.role == "member"
        assert await resolve(sessions, tenant_id=other.id, api_key_id=key.id, user_id=user.id) is None
        assert await resolve(sessions, tenant_id=org.id, api_key_id="key_nope", user_id=None) is None

        sso = await resolve(sessions, tenant_id=org.id, api_key_id="jwt:subject-1", user_id=user.id)
        assert sso is not None and sso.key_prefix == "jwt" and sso.role == "member"
        assert await resolve(sessions, tenant_id=org.id, api_key_id="jwt:subject-1", user_id=None) is None

        async with sessions.begin() as s:
            row = await s.get(ApiKey, service_key.id)
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        assert await resolve(sessions, tenant_id=org.id, api_key_id=service_key.id, user_id=None) is None
        await service.revoke_key(sessions, tenant_id=org.id, key_id=key.id)
        assert await resolve(sessions, tenant_id=org.id, api_key_id=key.id, user_id=user.id) is None
        await service.disable_user(sessions, tenant_id=org.id, user_id=user.id)
        assert await resolve(sessions, tenant_id=org.id, api_key_id="jwt:subject-1", user_id=user.id) is None
    finally:
        await engine.dispose()
