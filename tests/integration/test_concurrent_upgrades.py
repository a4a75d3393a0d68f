"""`switchyard db upgrade` run three times at once on one fresh PostgreSQL database: a migrate Job beside a
starting outcome recorder (it migrates its own store), two operators, replicas that migrate at start. Each
service's migrations wait for the others' (an advisory lock per service), so the later ones find the
tables made and do nothing; before, each ran the first migration and the others failed on a table or a
version row another had just made."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from switchyard.cli.db_cmd import all_migrations
from switchyard.common.db import create_engine

pytestmark = pytest.mark.integration


async def test_three_upgrades_at_once_all_succeed_and_each_service_is_migrated_once(
    postgres_url: str,
) -> None:
    command = [sys.executable, "-m", "switchyard.cli.main", "db", "upgrade", "--database-url", postgres_url]
    runs = [
        subprocess.Popen(
            command, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    ended = [(run.wait(timeout=180), *run.communicate()) for run in runs]
    assert [code for code, _, _ in ended] == [0, 0, 0], [err[-2000:] for _, _, err in ended]
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            for migrations in all_migrations():
                rows = (await conn.execute(text(f"SELECT version_num FROM {migrations.version_table}"))).all()
                assert [r[0] for r in rows] == [migrations.history()[0].revision], migrations.service
    finally:
        await engine.dispose()
