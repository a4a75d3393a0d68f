"""PgBouncer in transaction mode in front of PostgreSQL, as docs/operations/scaling.md suggests for many
replicas. asyncpg prepares every statement under a name on its server connection and caches it; PgBouncer
gives each transaction whichever server connection is free, where that name is unknown or taken: 583 of
900 transactions failed ("prepared statement "__asyncpg_stmt_c6__" does not exist") with three engines
before `SWITCHYARD_DATABASE_PGBOUNCER`, none with it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.verify import verify_ledger
from switchyard.cli.processes import PostgresCluster
from switchyard.common.config import CommonSettings
from switchyard.common.db import create_engine, sessionmaker
from tests.support.ledger import fill
from tests.support.pgbouncer import PgBouncer

pytestmark = pytest.mark.integration


@pytest.fixture
def bouncer(postgres_cluster: PostgresCluster, postgres_url: str) -> Iterator[PgBouncer]:
    if not PgBouncer.available():
        pytest.fail("pgbouncer not found: `make test` installs it (apt-get install pgbouncer)")
    asyncio.run(audit_migrations().upgrade(postgres_url))
    # Not under pytest's tmp dir: that one is private to root and PgBouncer runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="switchyard-pgb-"))
    pool = PgBouncer(folder, postgres_cluster, database=postgres_url.rsplit("/", 1)[1]).start()
    try:
        yield pool
    finally:
        pool.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def test_replicas_through_pgbouncer_in_transaction_mode(bouncer: PgBouncer) -> None:
    settings = CommonSettings(database_url=bouncer.url(), database_pgbouncer=True)
    engines = [create_engine(settings.db_url(), **settings.db_options()) for _ in range(3)]
    failed: Counter[str] = Counter()

    async def replica_work(n: int) -> None:
        for i in range(30):
            try:
                async with engines[n % 3].begin() as conn:
                    await conn.execute(
                        text("SELECT count(*) FROM ledger_entries WHERE tenant_id = :t"), {"t": f"t{n}"}
                    )
                    await conn.execute(
                        text("SELECT seq FROM ledger_entries WHERE event_id = :e"), {"e": f"e{i}"}
                    )
            except Exception as exc:
                failed[type(exc).__name__ + ": " + str(exc).splitlines()[0][:120]] += 1

    try:
        await asyncio.gather(*(replica_work(n) for n in range(30)))
        assert not failed, failed.most_common(3)
        sessions = sessionmaker(engines[0])
        await fill(sessions, 1, 200, batch=50)  # the audit service's appends: triggers, head checks
        assert (await verify_ledger(sessionmaker(engines[1]))).ok
    finally:
        for engine in engines:
            await engine.dispose()


def test_the_cli_through_pgbouncer(bouncer: PgBouncer) -> None:
    """`switchyard db upgrade` and the ledger's commands read SWITCHYARD_DATABASE_PGBOUNCER as the services
    do (before: `ledger verify` said `prepared statement "__asyncpg_stmt_1__" already exists`)."""
    env = {**os.environ, "SWITCHYARD_DATABASE_URL": bouncer.url(), "SWITCHYARD_DATABASE_PGBOUNCER": "true"}
    for command in (["db", "upgrade"], ["ledger", "verify"], ["ledger", "verify"]):
        done = subprocess.run(
            [sys.executable, "-m", "switchyard.cli.main", *command], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (command, done.stderr)
