"""What counts as "the database cannot be reached now" (a 503 `database_unavailable` at the gateway) and
what does not (a statement that is wrong stays a bug's 500), on a real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from switchyard.cli.processes import free_port
from switchyard.common.db import create_engine, unreachable

pytestmark = pytest.mark.integration


async def _raised(url: str, statement: str = "SELECT 1", **options: object) -> BaseException:
    engine = create_engine(url, **options)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError("nothing was raised")


async def test_a_refused_connection_is_unreachable(postgres_url: str) -> None:
    base, _, database = postgres_url.rpartition("/")
    url = f"{base.rpartition(':')[0]}:{free_port()}/{database}"
    assert unreachable(await _raised(url))


async def test_a_pool_with_no_connection_free_is_unreachable(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(Exception) as waited:
                async with engine.connect():
                    pass
            assert unreachable(waited.value)
    finally:
        await engine.dispose()


async def test_a_wrong_statement_or_a_missing_database_is_not(postgres_url: str) -> None:
    assert not unreachable(await _raised(postgres_url, "SELECT * FROM no_such_table"))
    assert not unreachable(await _raised(postgres_url.rpartition("/")[0] + "/no_such_db"))
    assert not unreachable(ConnectionRefusedError("not the database's"))
