"""One entry per event id of each tenant: `ledger_entries` is unique on (event_id, tenant_id), not event_id

Other systems choose their CloudEvent ids: under au0006's schema an organisation's event whose id another's
already had was taken for a redelivery and never recorded (an organisation could keep another's task
submissions out of the ledger by publishing first under their ids). Tenant-less (system) events carry the
tenant "-" (entries.UNKNOWN_TENANT), never NULL, so they still de-duplicate among themselves. Uniqueness is
an index, outside the entries' bytes: no byte or hash changes, the ledger verifies as it did.

PostgreSQL creates the new unique index and drops the old constraint in place. SQLite cannot drop the index
behind a UNIQUE table constraint, so the table is rebuilt in one transaction from its own DDL (au0004's
way): created without the constraint, the rows copied as they are, the old table dropped and the new one
renamed, then its indexes and triggers (and the checkpoints' trigger, which names it) created again as
they were. The copy takes time in proportion to the ledger: 1.0 s up, 0.9 s down for 100,000 entries
(a 100 MB file) on a busy 2-core VM.

The downgrade is refused (one line, nothing changed) while two tenants have an entry of one event id: the
previous schema can hold only one of them.

Revision ID: au0007
Revises: au0006
Create Date: 2026-12-07
"""

import re

import sqlalchemy as sa
from alembic import op

from switchyard.common.db import DowngradeRefused

revision = "au0007"
down_revision = "au0006"
branch_labels = None
depends_on = None

NEW = "uq_ledger_entries_event_tenant"
OLD_POSTGRESQL = "ledger_entries_event_id_key"
OLD_SQLITE = re.compile(r",\s*UNIQUE \(event_id\)")


def _rebuild_sqlite(*, unique_event_id: bool) -> None:
    # A savepoint opens the transaction before the DDL (Python's sqlite3 would run it on its own): a failure
    # anywhere leaves the ledger as it was (see au0004).
    bind = op.get_bind()
    op.execute("SAVEPOINT ledger_rebuild")
    (table,) = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ledger_entries'")
    ).one()
    # the table's own indexes and triggers, and the checkpoints' trigger that names it; not NEW, made below
    kept = [
        (kind, name, sql)
        for kind, name, sql in bind.execute(
            sa.text(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND type IN "
                "('index', 'trigger') AND (tbl_name = 'ledger_entries' OR sql LIKE '%ledger_entries%') "
                "ORDER BY type, name"
            )
        ).all()
        if name != NEW
    ]
    if unique_event_id:
        rebuilt = re.sub(r"\)\s*$", ", \n\tUNIQUE (event_id)\n)", table)
    else:
        rebuilt, found = OLD_SQLITE.subn("", table)
        if found != 1:
            raise RuntimeError(f"ledger_entries has no UNIQUE (event_id) to drop: {table}")
    rebuilt = rebuilt.replace('"ledger_entries"', "ledger_entries_rebuilt", 1).replace(
        "TABLE ledger_entries ", "TABLE ledger_entries_rebuilt ", 1
    )
    for kind, name, _ in kept:
        if kind == "trigger":
            op.execute(f"DROP TRIGGER {name}")
    op.execute(rebuilt)
    op.execute("INSERT INTO ledger_entries_rebuilt SELECT * FROM ledger_entries ORDER BY seq")
    op.execute("DROP TABLE ledger_entries")
    op.execute("ALTER TABLE ledger_entries_rebuilt RENAME TO ledger_entries")
    for _, _, sql in kept:
        op.execute(sql)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE UNIQUE INDEX {NEW} ON ledger_entries (event_id, tenant_id)")
        op.execute(f"ALTER TABLE ledger_entries DROP CONSTRAINT {OLD_POSTGRESQL}")
        return
    _rebuild_sqlite(unique_event_id=False)
    op.execute(f"CREATE UNIQUE INDEX {NEW} ON ledger_entries (event_id, tenant_id)")


def downgrade() -> None:
    """The event id alone unique again: refused while two tenants have an entry of one event id."""
    shared = op.get_bind().execute(
        sa.text("SELECT event_id FROM ledger_entries GROUP BY event_id HAVING COUNT(*) > 1 LIMIT 3")
    )
    ids = [row[0] for row in shared]
    if ids:
        raise DowngradeRefused(
            "audit au0007 cannot be downgraded: several organisations have a ledger entry of one event id "
            f"({', '.join(ids)}), which au0006's schema records once; the ledger is append-only, so stay "
            "at au0007"
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE ledger_entries ADD CONSTRAINT {OLD_POSTGRESQL} UNIQUE (event_id)")
        op.execute(f"DROP INDEX {NEW}")
        return
    op.execute(f"DROP INDEX {NEW}")
    _rebuild_sqlite(unique_event_id=True)
