"""PostgreSQL as a managed deployment has it: the database belongs to a role that is no superuser and may not
create roles, and a DBA made the services' role. `switchyard ledger app-role`, run as that owner, grants the
services' role what they need, now and after a later `switchyard db upgrade` adds tables; a role it may
not make is one line saying what to do, not "has `switchyard db upgrade` run?"."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from switchyard.billing.db import migrations as billing_migrations
from switchyard.cli.db_cmd import upgrade_all
from switchyard.cli.processes import PostgresCluster
from switchyard.common.db import create_engine

pytestmark = pytest.mark.integration

CLI = (sys.executable, "-m", "switchyard.cli.main")


@dataclass(frozen=True)
class Managed:
    owner_url: str
    app_role: str
    app_url: str


async def _as_superuser(cluster: PostgresCluster, *statements: str) -> None:
    engine = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def managed(postgres_cluster: PostgresCluster) -> AsyncIterator[Managed]:
    """A database owned by a plain role (LOGIN only), and an app role a DBA created beforehand."""
    tag = uuid.uuid4().hex[:8]
    owner, app, database = f"owner_{tag}", f"app_{tag}", f"managed_{tag}"
    await _as_superuser(
        postgres_cluster,
        f"CREATE ROLE {owner} LOGIN",
        f"CREATE DATABASE {database} OWNER {owner}",
        f"CREATE ROLE {app} LOGIN",
    )
    yield Managed(
        owner_url=postgres_cluster.url(database, user=owner),
        app_role=app,
        app_url=postgres_cluster.url(database, user=app),
    )


def _app_role(url: str, role: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "ledger", "app-role", "--role", role, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_owner_grants_a_role_a_dba_made(managed: Managed) -> None:
    await upgrade_all(managed.owner_url)
    done = _app_role(managed.owner_url, managed.app_role)
    assert done.returncode == 0, done.stderr
    app = create_engine(managed.app_url)
    try:
        async with app.begin() as conn:
            await conn.execute(
                text("INSERT INTO siem_export_positions (name, seq, updated_at) VALUES ('x', 1, now())")
            )
            await conn.execute(text("UPDATE siem_export_positions SET seq = 2 WHERE name = 'x'"))
            assert (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one() == 0
    finally:
        await app.dispose()


async def test_a_role_the_owner_may_not_create_is_one_line_saying_so(managed: Managed) -> None:
    await upgrade_all(managed.owner_url)
    done = _app_role(managed.owner_url, "not_made_by_a_dba")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "CREATEROLE" in done.stderr and "CREATE ROLE not_made_by_a_dba" in done.stderr, done.stderr
    assert "db upgrade" not in done.stderr, done.stderr


async def test_tables_a_later_upgrade_adds_are_the_app_roles_too(managed: Managed) -> None:
    """bi0010 adds `usage_daily_keys`: a role granted before that upgrade wrote no per-key usage after it
    (every usage event of that billing replica failed until someone ran app-role again)."""
    await upgrade_all(managed.owner_url)
    await billing_migrations().downgrade(managed.owner_url, "bi0009")
    done = _app_role(managed.owner_url, managed.app_role)
    assert done.returncode == 0, done.stderr
    await upgrade_all(managed.owner_url)  # the next release's `switchyard db upgrade`, as the owner
    app = create_engine(managed.app_url)
    try:
        async with app.begin() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM usage_daily_keys"))).scalar_one() == 0
    finally:
        await app.dispose()


async def test_reading_as_a_role_without_the_grants_names_app_role_not_db_upgrade(managed: Managed) -> None:
    """The tables are there (upgraded), the services' role was never granted them: the CLI's readers said
    "has `switchyard db upgrade` run?", which sends the operator the wrong way."""
    await upgrade_all(managed.owner_url)
    for command in (["ledger", "verify"], ["billing", "usage", "--tenant", "acme"]):
        done = subprocess.run(
            [*CLI, *command, "--database-url", managed.app_url], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "permission denied" in done.stderr and "switchyard ledger app-role" in done.stderr, done.stderr
        assert "db upgrade" not in done.stderr, done.stderr


async def test_reading_before_the_tables_exist_still_names_db_upgrade(managed: Managed) -> None:
    done = subprocess.run(
        [*CLI, "ledger", "verify", "--database-url", managed.owner_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "has `switchyard db upgrade` run?" in done.stderr, done.stderr
