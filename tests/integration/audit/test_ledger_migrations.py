"""The ledger's schema changes on real SQLite and PostgreSQL: a ledger written under the previous revision
keeps every row, every guard and its verification through an upgrade and back."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.audit.db import migrations
from switchyard.audit.service import append_entries, head
from switchyard.audit.verify import verify_ledger
from switchyard.common.db import DowngradeRefused, create_engine, sessionmaker
from tests.integration.audit.test_ledger_db import draft
from tests.support.db_commands import LEDGER_COLUMNS

pytestmark = pytest.mark.integration

HASHES = {"prev_hash", "entry_hash"}

# Every column of seq 10 after its seq, with prev_hash set to seq 10's own hash: it extends the head, so only
# the unique event id can refuse it.
_COPY = (*LEDGER_COLUMNS[1:-2], "entry_hash", "entry_hash")


def _unique_columns(conn: Connection) -> set[str]:
    """Columns of ledger_entries that a unique constraint or a unique index covers, one column each."""
    found = inspect(conn)
    constraints = found.get_unique_constraints("ledger_entries")
    indexes = [i for i in found.get_indexes("ledger_entries") if i["unique"]]
    return {c for group in (*constraints, *indexes) for c in group["column_names"] if c is not None}


# The columns every revision has (au0006 added `provenance`, NULL in the entries written before).
_V1 = ", ".join(LEDGER_COLUMNS)


async def _state(engine: AsyncEngine) -> tuple[set[str], list[Any]]:
    async with engine.connect() as conn:
        unique = await conn.run_sync(_unique_columns)
        rows = (await conn.execute(text(f"SELECT {_V1} FROM ledger_entries ORDER BY seq"))).all()
    return unique, [tuple(r) for r in rows]


async def _refused(engine: AsyncEngine, statement: str) -> str:
    with pytest.raises(DBAPIError) as caught:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    return str(caught.value)


async def _guards_hold(engine: AsyncEngine) -> None:
    """Every refusal the ledger's tables make, whatever the revision."""
    for change in ("UPDATE ledger_entries SET outcome = 'failure'", "DELETE FROM ledger_entries"):
        assert "append-only" in await _refused(engine, change)
    _, head_hash = await head(sessionmaker(engine))
    row = "'x', '2026-11-22 09:30:00', '2026-11-22 09:30:00', 'acme', 'a', 'x', 'r', 'success', '{}'"

    def insert(seq: int, prev: str) -> str:
        return f"INSERT INTO ledger_entries ({_V1}) VALUES ({seq}, {row}, '{prev}', '{'f' * 64}')"

    assert "extend the head" in await _refused(engine, insert(99, head_hash))  # a gap
    assert await _refused(engine, insert(2, "0" * 64))  # a fork (PostgreSQL: the seq key refuses first)
    checkpoint = (
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, created_at, origin, key_id, public_key,"
        " signature, note) VALUES (1000, 'r', '2026-11-22 09:30:00', 'o', 'k', 'p', 's', 'n')"
    )
    assert "larger than the last one and within the ledger" in await _refused(engine, checkpoint)


async def test_au0004_drops_the_hash_indexes_and_keeps_every_entry_and_guard(db_url: str) -> None:
    await migrations().upgrade(db_url, "au0003")
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        await append_entries(sessions, drafts=[draft(i) for i in range(1, 8)])
        unique, rows = await _state(engine)
        assert unique >= HASHES and "event_id" in unique

        await migrations().upgrade(db_url)
        unique, after = await _state(engine)
        assert after == rows
        assert "event_id" in unique and not HASHES & unique
        await _guards_hold(engine)
        # The writer goes on, an event already stored is still refused, and the chain verifies.
        await append_entries(sessions, drafts=[draft(i) for i in range(5, 11)])
        report = await verify_ledger(sessions)
        assert report.ok and report.entries == 10
        copy = (
            f"INSERT INTO ledger_entries ({_V1}) "
            f"SELECT 11, {', '.join(_COPY)} FROM ledger_entries WHERE seq = 10"
        )
        duplicate = await _refused(engine, copy)
        assert "unique" in duplicate.lower()

        await migrations().downgrade(db_url, "au0003")
        unique, back = await _state(engine)
        assert unique >= HASHES and len(back) == 10 and back[:7] == rows
        await _guards_hold(engine)
        assert (await verify_ledger(sessions)).ok
    finally:
        await engine.dispose()


async def test_a_rebuild_that_fails_halfway_changes_nothing(db_url: str) -> None:
    """The downgrade needs the hashes unique again; an entry appended behind the writer's back (the head
    trigger checks the link, not the entry's own hash) repeats one, so the copy (SQLite) or the constraint
    (PostgreSQL) fails after the rebuild began: the schema, the guards and the rows stay as they were."""
    await migrations().upgrade(db_url, "au0004")
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        await append_entries(sessions, drafts=[draft(i) for i in range(1, 6)])
        _, head_hash = await head(sessions)
        async with engine.begin() as conn:
            first = (
                await conn.execute(text("SELECT entry_hash FROM ledger_entries WHERE seq = 1"))
            ).scalar_one()
            columns = "recorded_at, occurred_at, tenant_id, actor, action, resource, outcome, details"
            forged = f"SELECT 6, 'evt-forged', {columns}, :prev, :again FROM ledger_entries WHERE seq = 5"
            await conn.execute(
                text(f"INSERT INTO ledger_entries {forged}"), {"prev": head_hash, "again": first}
            )
        before = await _state(engine)

        with pytest.raises(DBAPIError):
            await migrations().downgrade(db_url, "au0003")
        assert await _state(engine) == before
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version_audit"))).scalar_one()
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert version == "au0004" and "ledger_entries_rebuilt" not in tables
        await _guards_hold(engine)
    finally:
        await engine.dispose()


async def test_au0005_adds_the_digest_keys_and_leaves_the_ledger_as_it_was(db_url: str) -> None:
    await migrations().upgrade(db_url, "au0004")
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        await append_entries(sessions, drafts=[draft(i) for i in range(1, 6)])
        _, rows = await _state(engine)
        await migrations().upgrade(db_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "ledger_digest_keys" in tables and (await _state(engine))[1] == rows
        assert (await verify_ledger(sessions)).ok
        await migrations().downgrade(db_url, "au0004")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "ledger_digest_keys" not in tables and (await _state(engine))[1] == rows
    finally:
        await engine.dispose()


async def test_au0006_an_old_ledger_verifies_unchanged_and_new_entries_record_their_provenance(
    db_url: str,
) -> None:
    """A ledger written before entries recorded where their events came from: it verifies as it is (this
    release's verifier on the old schema too), the upgrade changes no byte of it, and entries appended after
    carry their provenance (format v2) in the same chain."""
    await migrations().upgrade(db_url, "au0005")
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        await append_entries(sessions, drafts=[draft(i) for i in range(1, 6)])
        _, rows = await _state(engine)
        old_head = await head(sessions)
        before = await verify_ledger(sessions)  # not migrated yet: no provenance column
        assert before.ok and before.entries == 5

        await migrations().upgrade(db_url)
        assert (await _state(engine))[1] == rows and await head(sessions) == old_head
        after = await verify_ledger(sessions)
        assert after.ok and after.entries == 5 and after.root_hash == before.root_hash
        came = {"subject": "switchyard.task.routed", "by": ["service:router"]}
        await append_entries(sessions, drafts=[draft(i, provenance=came) for i in range(6, 9)])
        report = await verify_ledger(sessions)
        assert report.ok and report.entries == 8
        async with engine.connect() as conn:
            stored = (
                await conn.execute(text("SELECT provenance FROM ledger_entries ORDER BY seq"))
            ).scalars()
            assert (
                list(stored)
                == [None] * 5 + ['{"by":["service:router"],"subject":"switchyard.task.routed"}'] * 3
            )
        await _guards_hold(engine)  # no entry gains or loses a provenance afterwards
        assert "append-only" in await _refused(engine, "UPDATE ledger_entries SET provenance = NULL")
    finally:
        await engine.dispose()


async def test_au0007_records_each_organisations_event_of_one_id_and_changes_no_byte(db_url: str) -> None:
    """A ledger written with the event id alone unique: the upgrade keeps every row and the root, then an
    event of an id another organisation has is recorded (and redelivered, still once); back down is
    refused while two share an id, and goes once they do not (a fresh ledger), up again as before."""
    await migrations().upgrade(db_url, "au0006")
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        await append_entries(sessions, drafts=[draft(i) for i in range(1, 6)])
        _, rows = await _state(engine)
        before = await verify_ledger(sessions)

        await migrations().upgrade(db_url)
        unique, after = await _state(engine)
        assert after == rows and (await verify_ledger(sessions)).root_hash == before.root_hash
        assert "event_id" in unique and "tenant_id" in unique
        theirs = draft(5, tenant_id="globex")  # acme's event id 5, another organisation's event
        placed = await append_entries(sessions, drafts=[theirs, draft(5), theirs])
        assert [(a.seq, a.created) for a in placed] == [(6, True), (5, False), (6, True)]
        await _guards_hold(engine)
        report = await verify_ledger(sessions)
        assert report.ok and report.entries == 6

        with pytest.raises(DowngradeRefused, match="evt-0005"):
            await migrations().downgrade(db_url, "au0006")
        assert len((await _state(engine))[1]) == 6
        await _guards_hold(engine)
    finally:
        await engine.dispose()


async def test_au0007_down_and_up_again_with_entries_of_distinct_ids(db_url: str) -> None:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        await append_entries(sessions, drafts=[draft(i, tenant_id=("acme", "-")[i % 2]) for i in range(1, 6)])
        _, rows = await _state(engine)
        await migrations().downgrade(db_url, "au0006")
        unique, back = await _state(engine)
        assert back == rows and "tenant_id" not in unique and "event_id" in unique
        await _guards_hold(engine)
        copy = f"INSERT INTO ledger_entries ({_V1}) SELECT 6, {', '.join(_COPY[:3])}, 'globex', " + (
            f"{', '.join(_COPY[4:])} FROM ledger_entries WHERE seq = 5"
        )
        assert "unique" in (await _refused(engine, copy)).lower()  # the event id alone, again
        await migrations().upgrade(db_url)
        assert (await _state(engine))[1] == rows
        await append_entries(sessions, drafts=[draft(5, tenant_id="globex"), draft(5, tenant_id="-")])
        report = await verify_ledger(sessions)
        assert report.ok and report.entries == 6
        await _guards_hold(engine)
    finally:
        await engine.dispose()
