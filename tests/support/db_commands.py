"""What the `switchyard db ...` tests share: the command run as an operator runs it, and the state of a
database (every service's revision, every table's columns, the ledger's rows) a refusal must not change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.cli.db_cmd import upgrade_all
from switchyard.cli.main import main
from switchyard.common.db import create_engine

LEDGER_COLUMNS = (
    "seq",
    "event_id",
    "recorded_at",
    "occurred_at",
    "tenant_id",
    "actor",
    "action",
    "resource",
    "outcome",
    "details",
    "prev_hash",
    "entry_hash",
)


async def db_state(engine: AsyncEngine) -> dict[str, Any]:
    """Every service's revision, every table's columns, every ledger row: what a refusal must not change."""

    def read(sync: Any) -> dict[str, Any]:
        found = inspect(sync)
        tables = {t: [c["name"] for c in found.get_columns(t)] for t in sorted(found.get_table_names())}
        versions = {
            t: sync.execute(text(f"SELECT version_num FROM {t}")).scalar_one_or_none()
            for t in tables
            if t.startswith("alembic_version_")
        }
        return {"tables": tables, "versions": versions}

    async with engine.connect() as conn:
        state = await conn.run_sync(read)
        if "ledger_entries" in state["tables"]:
            # the columns of every revision (au0006 added `provenance`, inside the hashes verify checks)
            rows = await conn.execute(
                text(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries ORDER BY seq")
            )
            state["entries"] = [tuple(r) for r in rows]
    return state


async def run_cli(capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, str, str]:
    """The command as an operator runs it (its own event loop: on a thread, away from the test's)."""
    code = await asyncio.to_thread(main, list(words))
    out, err = capsys.readouterr()
    return code, out, err


@contextlib.asynccontextmanager
async def migrated(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the database with every service's migrations at their head, disposed after."""
    await upgrade_all(db_url)
    made = create_engine(db_url)
    try:
        yield made
    finally:
        await made.dispose()
