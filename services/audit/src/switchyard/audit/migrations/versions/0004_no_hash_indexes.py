"""Drop the unique indexes on prev_hash and entry_hash: the extend-the-head trigger already forbids forks

Every insert must take the next seq and link to its predecessor's entry_hash (au0001's trigger, per statement
on PostgreSQL since au0003), and seq is the primary key, so each entry has exactly one successor: the two
unique indexes added nothing to that guard. They were most of the ledger's write cost: two more random-key
B-trees that every entry joins, each dirtying a page of its own per entry (37 KiB written per entry against
14 KiB without them on a ledger of 100,000 entries, half the CPU per appended entry; docs/performance.md,
"The ledger's hash indexes"). Nothing looks an entry up by either hash; `switchyard ledger verify`
recomputes both for every entry, in seq order. event_id keeps its unique index: it is what makes
an event recorded once however often it arrives.

PostgreSQL drops the two constraints in place. SQLite cannot drop the index behind a UNIQUE column
constraint, so the table is rebuilt, in one transaction: created without them, the rows copied as they are
(byte for byte: `switchyard ledger verify` checks them as before), the old table dropped (its triggers with
it) and the new one renamed, then its indexes and triggers created again. The downgrade puts the indexes
back the same way; it fails, changing nothing, if entries written since share a hash.
On SQLite the copy takes time in proportion to the ledger (22 s for a million entries on a 2-core VM), and
the old table's pages stay in the file as free pages that later entries reuse (`VACUUM` returns them).

Revision ID: au0004
Revises: au0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "au0004"
down_revision = "au0003"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
APPEND_ONLY = "ledger_entries is append-only"
EXTEND_HEAD = (
    "ledger_entries: an insert must extend the head (seq = head seq + 1, prev_hash = head entry_hash)"
)
GROWS = "ledger_checkpoints: a checkpoint must be larger than the last one and within the ledger"
HASHES = ("prev_hash", "entry_hash")

# au0001's and au0002's SQLite triggers as they are; the first three go with the dropped table, and the
# checkpoints' trigger names ledger_entries, which does not exist between the drop and the rename.
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: UPDATE refused'); END""",
    f"""CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: DELETE refused'); END""",
    f"""CREATE TRIGGER ledger_entries_extend_head BEFORE INSERT ON ledger_entries
        WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger_entries)
          OR NEW.prev_hash IS NOT COALESCE(
               (SELECT entry_hash FROM ledger_entries WHERE seq = NEW.seq - 1), '{GENESIS}')
        BEGIN SELECT RAISE(ABORT, '{EXTEND_HEAD}'); END""",
    f"""CREATE TRIGGER ledger_checkpoints_grow BEFORE INSERT ON ledger_checkpoints
    WHEN NEW.tree_size <= (SELECT COALESCE(MAX(tree_size), 0) FROM ledger_checkpoints)
      OR NEW.tree_size > (SELECT COALESCE(MAX(seq), 0) FROM ledger_entries)
    BEGIN SELECT RAISE(ABORT, '{GROWS}'); END""",
]


def _rebuild_sqlite(*, unique_hashes: bool) -> None:
    # Python's sqlite3 opens a transaction only before a data change, so the DDL before the copy would run
    # (and commit) on its own: a savepoint opens one first (or nests in the one already open), and the
    # migration's commit takes everything, the version row included. A failure anywhere leaves the ledger
    # as it was.
    op.execute("SAVEPOINT ledger_rebuild")
    op.execute("DROP TRIGGER ledger_checkpoints_grow")
    op.create_table(
        "ledger_entries_rebuilt",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(128), nullable=False, unique=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        *(sa.Column(name, sa.String(64), nullable=False, unique=unique_hashes) for name in HASHES),
    )
    op.execute("INSERT INTO ledger_entries_rebuilt SELECT * FROM ledger_entries ORDER BY seq")
    op.execute("DROP TABLE ledger_entries")
    op.execute("ALTER TABLE ledger_entries_rebuilt RENAME TO ledger_entries")
    op.create_index("ix_ledger_entries_tenant_id", "ledger_entries", ["tenant_id"])
    op.create_index("ix_ledger_entries_action", "ledger_entries", ["action"])
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


def _hash_indexes(*, unique: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        _rebuild_sqlite(unique_hashes=unique)
        return
    change = (
        "ADD CONSTRAINT ledger_entries_{0}_key UNIQUE ({0})"
        if unique
        else "DROP CONSTRAINT ledger_entries_{0}_key"
    )
    op.execute("ALTER TABLE ledger_entries " + ", ".join(change.format(name) for name in HASHES))


def upgrade() -> None:
    _hash_indexes(unique=False)


def downgrade() -> None:
    _hash_indexes(unique=True)
