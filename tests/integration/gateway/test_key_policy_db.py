"""Key policies in the database, on SQLite and PostgreSQL: the migration leaves existing keys without one,
a policy set at creation and changed later reaches the verified principal, rotation keeps it, and the
migration goes down again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway import keys
from switchyard.gateway.access import service
from switchyard.gateway.access.models import KeyCreate, KeyUpdate
from switchyard.gateway.batches import principals
from switchyard.gateway.db import migrations
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.key_policy import KeyPolicy
from switchyard.gateway.tenants import KeyVerifier, create_api_key, create_tenant

pytestmark = pytest.mark.integration


async def test_policies_round_trip_and_existing_keys_have_none(db_url: str) -> None:
    await migrations().upgrade(db_url, "gw0002")
    old_key, prefix = keys.generate()
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants (id, name, plan, created_at) VALUES ('t1', 'acme', 'pro', :now)"),
            {"now": datetime.now(UTC)},
        )
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, key_hash, created_at) "
                "VALUES ('k1', 't1', NULL, 'old', :prefix, :hash, :now)"
            ),
            {"prefix": prefix, "hash": keys.hash_key(old_key), "now": datetime.now(UTC)},
        )
    await migrations().upgrade(db_url)
    sessions = sessionmaker(engine)
    verifier = KeyVerifier(sessions, ttl_s=0)
    try:
        old = await verifier.verify(old_key)
        assert old is not None and old.key_policy is None and old.counts_as == "k1"

        tenant = await create_tenant(sessions, name="globex")
        spec = KeyCreate(
            name="team",
            models=["auto", "cheap", "openai/gpt-6-luna"],
            rpm_limit=10,
            max_budget_usd=2.5,
            budget_duration="1mo",
        )
        plaintext, row = await service.create_key(
            sessions, tenant_id=tenant.id, spec=spec, default_user_id=None
        )
        principal = await verifier.verify(plaintext)
        assert principal is not None
        assert principal.key_policy == KeyPolicy(
            models=frozenset({"auto", "cheap", "openai/gpt-6-luna"}),
            rpm_limit=10,
            max_budget_usd=2.5,
            budget_duration="1mo",
        )

        # A batch's lines run as its creator found again by key id: with the key's policy too.
        batch_runner = await principals.resolve(
            sessions, tenant_id=tenant.id, api_key_id=row.id, user_id=None
        )
        assert batch_runner is not None and batch_runner.key_policy == principal.key_policy

        changes = KeyUpdate.model_validate({"models": None, "tpm_limit": 1000, "budget_duration": "1d"})
        await service.update_key(sessions, tenant_id=tenant.id, key_id=row.id, changes=changes)
        changed = await verifier.verify(plaintext)
        assert changed is not None
        assert changed.key_policy == KeyPolicy(
            rpm_limit=10, tpm_limit=1000, max_budget_usd=2.5, budget_duration="1d"
        )

        lifetime = await service.update_key(  # a budget without its period: in all, the key's lifetime
            sessions, tenant_id=tenant.id, key_id=row.id, changes=KeyUpdate(budget_duration=None)
        )
        assert lifetime.policy() == KeyPolicy(rpm_limit=10, tpm_limit=1000, max_budget_usd=2.5)
        await service.update_key(
            sessions, tenant_id=tenant.id, key_id=row.id, changes=KeyUpdate(budget_duration="1d")
        )
        with pytest.raises(Exception, match="no key"):  # another organisation's key is not found
            await service.update_key(sessions, tenant_id="t1", key_id=row.id, changes=KeyUpdate(rpm_limit=1))

        rotated, _, _ = await service.rotate_key(sessions, tenant_id=tenant.id, key_id=row.id, grace_s=0)
        successor = await verifier.verify(rotated)
        assert successor is not None and successor.key_policy == changed.key_policy
        # its counters are the first key's, through every rotation, for a batch's lines too
        assert (changed.counts_as, successor.counts_as) == (row.id, row.id)
        again, third, _ = await service.rotate_key(
            sessions, tenant_id=tenant.id, key_id=successor.api_key_id, grace_s=60
        )
        assert third.counts_as == row.id and (await verifier.verify(again)).counts_as == row.id  # type: ignore[union-attr]
        lined = await principals.resolve(sessions, tenant_id=tenant.id, api_key_id=third.id, user_id=None)
        assert lined is not None and lined.counts_as == row.id

        cleared = KeyUpdate.model_validate({"rpm_limit": None, "tpm_limit": None, "max_budget_usd": None})
        await service.update_key(sessions, tenant_id=tenant.id, key_id=successor.api_key_id, changes=cleared)
        plain = await verifier.verify(rotated)
        assert plain is not None and plain.key_policy == KeyPolicy(budget_duration="1d")
    finally:
        await engine.dispose()
    await migrations().downgrade(db_url, "gw0002")
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM api_keys ORDER BY name"))).scalars().all()
        assert names == ["old", "team", "team", "team"]
    finally:
        await engine.dispose()


async def test_an_expired_key_is_not_rotated_into_a_dead_one(db_url: str) -> None:
    """A rotation's successor keeps its key's expiry: an expired key's would be born expired (the caller
    handed a key that never works); refused as a revoked key's rotation is."""
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        tenant = await create_tenant(sessions, name="acme")
        _, expired = await create_api_key(
            sessions, tenant_id=tenant.id, name="old", expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
        with pytest.raises(InvalidRequest, match="an expired key cannot be rotated") as refused:
            await service.rotate_key(sessions, tenant_id=tenant.id, key_id=expired.id, grace_s=0)
        assert refused.value.param == "key_id"
    finally:
        await engine.dispose()
