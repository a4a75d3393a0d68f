"""PostgreSQL: the services' role may read and append the ledger, and nothing else, even once the owner has
dropped the append-only triggers: the privilege system refuses UPDATE, DELETE and TRUNCATE."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from switchyard.audit.checkpoints import make_checkpoint
from switchyard.audit.db import migrations
from switchyard.audit.export import positions
from switchyard.audit.signing import parse_private_key, signer_from
from switchyard.audit.verify import verify_ledger
from switchyard.common.db import create_engine, sessionmaker
from tests.support.ledger import fill

pytestmark = pytest.mark.integration

LEDGER_TABLES = ("ledger_entries", "merkle_nodes", "ledger_checkpoints", "ledger_archives")


async def test_the_app_role_is_refused_changes_at_the_privilege_level(postgres_url: str) -> None:
    await migrations().upgrade(postgres_url)
    role = f"sy_app_{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "switchyard.cli.main",
            "ledger",
            "app-role",
            "--role",
            role,
            "--database-url",
            postgres_url,
        ],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    user, _, rest = postgres_url.partition("postgres@")
    app_url = f"{user}{role}@{rest}"
    owner = create_engine(postgres_url)
    app = create_engine(app_url)
    try:
        sessions = sessionmaker(app)
        await fill(sessions, 1, 40)  # the services append and sign as the app role
        signer = signer_from(parse_private_key(b"66" * 32), origin="ledger.test/role")
        assert (await make_checkpoint(sessions, signer=signer)) is not None
        await positions.save(sessions, "siem", 10)
        await positions.save(sessions, "siem", 20)  # an export position is a cursor: it may be updated
        assert await positions.load(sessions, "siem") == 20
        async with owner.begin() as conn:  # the owner (or whoever stole its password) drops the triggers
            for trigger, table in (
                ("ledger_entries_no_update_delete", "ledger_entries"),
                ("ledger_entries_no_truncate", "ledger_entries"),
                ("merkle_nodes_no_update_delete", "merkle_nodes"),
                ("merkle_nodes_no_truncate", "merkle_nodes"),
                ("ledger_checkpoints_no_update_delete", "ledger_checkpoints"),
                ("ledger_checkpoints_no_truncate", "ledger_checkpoints"),
            ):
                await conn.execute(text(f"DROP TRIGGER {trigger} ON {table}"))
        for table in LEDGER_TABLES:
            column = {
                "ledger_entries": "actor",
                "merkle_nodes": "hash",
                "ledger_checkpoints": "note",
                "ledger_archives": "path",
            }[table]
            for statement in (
                f"UPDATE {table} SET {column} = {column}",
                f"DELETE FROM {table}",
                f"TRUNCATE {table}",
            ):
                with pytest.raises(DBAPIError) as refused:
                    async with app.begin() as conn:
                        await conn.execute(text(statement))
                assert getattr(refused.value.orig, "sqlstate", None) == "42501", (
                    statement
                )  # insufficient_privilege
        async with (
            owner.begin() as conn
        ):  # without its triggers, the owner itself could now: the role is the guard
            await conn.execute(text("UPDATE ledger_entries SET actor = actor WHERE seq = 1"))
        assert (await verify_ledger(sessions)).ok
    finally:
        await app.dispose()
        await owner.dispose()
