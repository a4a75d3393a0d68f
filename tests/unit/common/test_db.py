"""The SQLite engine's connection settings, read back from a real database file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from switchyard.common.db import create_engine


async def test_every_sqlite_connection_gets_the_settings(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a' / 'switchyard.db'}", pool_size=2)
    try:
        async with engine.connect() as one, engine.connect() as two:  # two pooled connections
            for conn in (one, two):
                got = {
                    name: (await conn.execute(text(f"PRAGMA {name}"))).scalar()
                    for name in (
                        "journal_mode",
                        "synchronous",
                        "busy_timeout",
                        "foreign_keys",
                        "temp_store",
                        "mmap_size",
                    )
                }
                assert got == {
                    "journal_mode": "wal",
                    "synchronous": 1,  # NORMAL
                    "busy_timeout": 30000,
                    "foreign_keys": 1,
                    "temp_store": 2,  # MEMORY: statement journals never spill to a file
                    "mmap_size": 268435456,
                }
    finally:
        await engine.dispose()
