"""The access tables on SQLite and PostgreSQL: the migration keeps existing keys working (as admins of
their organisation), and the development bootstrap (and a deployment's, `switchyard db bootstrap`) makes an
admin key of the platform organisation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from switchyard.cli.main import main
from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway import keys
from switchyard.gateway.db import migrations
from switchyard.gateway.models import User
from switchyard.gateway.tenants import (
    KeyVerifier,
    PlatformExists,
    Principal,
    bootstrap_platform,
    create_tenant,
    create_user,
    ensure_dev_tenant,
)

pytestmark = pytest.mark.integration


async def test_upgrade_keeps_existing_keys_as_admins(db_url: str) -> None:
    await migrations().upgrade(db_url, "gw0001")
    plaintext, prefix = keys.generate()
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants (id, name, plan, created_at) VALUES ('t1', 'dev', 'enterprise', :now)"),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, key_hash, created_at) "
                "VALUES ('k1', 't1', 'dev', 'old', :prefix, :hash, :now)"
            ),
            {"prefix": prefix, "hash": keys.hash_key(plaintext), "now": now},
        )
    await migrations().upgrade(db_url)
    principal = await KeyVerifier(sessionmaker(engine)).verify(plaintext)
    await engine.dispose()
    assert principal is not None
    assert (principal.role, principal.platform, principal.user_id) == ("admin", True, "dev")
    assert principal.can("admin") and principal.can("inference")


async def test_dev_bootstrap_is_an_admin_of_the_platform_org(db_url: str, tmp_path: Path) -> None:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    key_file = tmp_path / "dev-api-key"
    assert await ensure_dev_tenant(sessions, key_file=key_file) is True
    assert await ensure_dev_tenant(sessions, key_file=key_file) is False
    principal = await KeyVerifier(sessions).verify(key_file.read_text().strip())
    await engine.dispose()
    assert principal is not None and principal.role == "admin" and principal.platform
    assert principal.plan == "enterprise"


def test_a_deployment_gets_its_first_admin_key_from_the_cli_once(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """compose and Kubernetes have no `switchyard up` to make a key: `switchyard db bootstrap` (run in the
    CLI image after `db upgrade`) makes the platform's organisation, its first admin and an admin key,
    printed once; a second run mints nothing."""
    assert main(["db", "upgrade", "--database-url", db_url]) == 0
    args = ["db", "bootstrap", "--org", "acme-platform", "--email", "ops@acme.test", "--database-url", db_url]
    assert main(args) == 0
    out = capsys.readouterr().out
    (plaintext,) = [word for word in out.split() if keys.parse_prefix(word) is not None]
    assert main(args) == 1
    again = capsys.readouterr()
    assert keys.parse_prefix(again.out.strip() or "-") is None and "acme-platform" in again.err

    async def verified() -> Principal | None:
        engine = create_engine(db_url)
        try:
            return await KeyVerifier(sessionmaker(engine)).verify(plaintext)
        finally:
            await engine.dispose()

    principal = asyncio.run(verified())
    assert principal is not None and principal.platform and principal.role == "admin"
    assert principal.can("admin") and principal.can("inference") and principal.plan == "enterprise"


async def test_users_are_bound_to_one_identity_provider_account(db_url: str) -> None:
    """gw0005: existing users have no account yet (their next sign-on links them by email); one account
    (issuer, subject) is one user, across organisations; users without one do not collide; it downgrades."""
    await migrations().upgrade(db_url, "gw0004")
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants (id, name, plan, created_at) VALUES ('t1', 'acme', 'pro', :now)"),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO users (id, tenant_id, email, name, role, created_at) "
                "VALUES ('u1', 't1', 'ana@acme.test', '', 'member', :now)"
            ),
            {"now": now},
        )
    await migrations().upgrade(db_url)
    sessions = sessionmaker(engine)
    try:
        other = await create_tenant(sessions, name="globex")
        await create_user(sessions, tenant_id=other.id, email="x@globex.test", role="member")
        await create_user(sessions, tenant_id=other.id, email="y@globex.test", role="member")  # no clash
        async with sessions.begin() as s:
            ana = await s.get(User, "u1")
            assert ana is not None and (ana.oidc_issuer, ana.oidc_subject) == (None, None)
            ana.oidc_issuer, ana.oidc_subject = "https://idp.test", "acct-1"
        with pytest.raises(IntegrityError):
            await create_user(
                sessions,
                tenant_id=other.id,
                email="z@globex.test",
                role="admin",
                oidc=("https://idp.test", "acct-1"),
            )
        await create_user(
            sessions,
            tenant_id=other.id,
            email="z@globex.test",
            role="admin",
            oidc=("https://other.test", "acct-1"),
        )
    finally:
        await engine.dispose()
    await migrations().downgrade(db_url, "gw0004")
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            emails = (await conn.execute(text("SELECT email FROM users ORDER BY email"))).scalars().all()
        assert emails == ["ana@acme.test", "x@globex.test", "y@globex.test", "z@globex.test"]
    finally:
        await engine.dispose()


async def test_bootstraps_at_the_same_instant_make_one_platform_and_one_key(db_url: str) -> None:
    """`switchyard db bootstrap` run twice at once (a Job retried while its first pod still runs, two
    operators, an init container per replica): one makes the platform organisation and its admin key, the
    others are told it exists. Before, each looked, found none, and made its own: five platform
    organisations, five first admins and five admin keys on either database."""
    await migrations().upgrade(db_url)
    engines = [create_engine(db_url) for _ in range(5)]
    try:
        made = await asyncio.gather(
            *(
                bootstrap_platform(sessionmaker(engine), name=f"platform-{i}", email=f"ops{i}@acme.test")
                for i, engine in enumerate(engines)
            ),
            return_exceptions=True,
        )
        async with engines[0].connect() as conn:
            platforms = (await conn.execute(text("SELECT name FROM tenants WHERE platform"))).scalars().all()
            users = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
            api_keys = (await conn.execute(text("SELECT count(*) FROM api_keys"))).scalar_one()
    finally:
        for engine in engines:
            await engine.dispose()
    winners = [m for m in made if isinstance(m, tuple)]
    count = len(winners)  # not the list: it holds the keys' plaintexts
    assert count == 1, f"{count} bootstraps made a platform organisation"
    assert all(isinstance(m, PlatformExists) for m in made if not isinstance(m, tuple)), [
        type(m) for m in made
    ]
    assert (platforms, users, api_keys) == ([winners[0][0].name], 1, 1)


async def test_an_organisation_erased_before_the_registry_is_known_as_erased(db_url: str) -> None:
    """gw0007: an organisation erased before gw0006 (every user disabled, which only an erasure does: the
    last admin cannot be disabled) gets its erasure time, so the gateway's next registry sync marks it
    erased without `switchyard org erase` being run again; one with a user still enabled, one with no user
    and the platform's own are left alone."""
    await migrations().upgrade(db_url, "gw0006")
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            for org, platform in (("gone", False), ("open", False), ("empty", False), ("ops", True)):
                await conn.execute(
                    text(
                        "INSERT INTO tenants (id, name, plan, created_at, platform) "
                        "VALUES (:id, :id, 'pro', :now, :platform)"
                    ),
                    {"id": org, "now": now, "platform": platform},
                )
            for user, org, disabled in (
                ("g1", "gone", now),
                ("g2", "gone", later),
                ("o1", "open", now),
                ("o2", "open", None),
                ("p1", "ops", now),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO users (id, tenant_id, email, name, role, created_at, disabled_at) "
                        "VALUES (:id, :org, :email, '', 'admin', :now, :disabled)"
                    ),
                    {"id": user, "org": org, "email": f"{user}@x.test", "now": now, "disabled": disabled},
                )
        await migrations().upgrade(db_url)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, erased_at FROM tenants"))).all()
        erased = {org: at for org, at in rows}
        assert erased["gone"] is not None
        assert str(erased["gone"]).startswith("2030-01-02 03:04:05")
        assert (erased["open"], erased["empty"], erased["ops"]) == (None, None, None)
    finally:
        await engine.dispose()
    await migrations().downgrade(db_url, "gw0006")
