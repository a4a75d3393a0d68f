"""the append-only ledger

The database itself refuses UPDATE, DELETE (and on PostgreSQL TRUNCATE) of ledger rows, and refuses an
INSERT that does not extend the chain's head (seq = head + 1, prev_hash = the head's entry_hash), so no
writer, replica or bug can rewrite, fork or leave a gap in the chain.

Revision ID: au0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "au0001"
down_revision = None
branch_labels = None
depends_on = None
# What the downgrade drops with its rows: `switchyard db downgrade` refuses it while they hold any
# unless --drop-data says so.
DOWNGRADE_DROPS = ("ledger_entries",)

GENESIS = "0" * 64
APPEND_ONLY = "ledger_entries is append-only"
EXTEND_HEAD = (
    "ledger_entries: an insert must extend the head (seq = head seq + 1, prev_hash = head entry_hash)"
)

SQLITE = [
    f"""CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: UPDATE refused'); END""",
    f"""CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: DELETE refused'); END""",
    f"""CREATE TRIGGER ledger_entries_extend_head BEFORE INSERT ON ledger_entries
        WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger_entries)
          OR NEW.prev_hash IS NOT COALESCE(
               (SELECT entry_hash FROM ledger_entries WHERE seq = NEW.seq - 1), '{GENESIS}')
        BEGIN SELECT RAISE(ABORT, '{EXTEND_HEAD}'); END""",
]

POSTGRESQL = [
    f"""CREATE FUNCTION ledger_entries_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '{APPEND_ONLY}: % refused', TG_OP USING ERRCODE = 'integrity_constraint_violation';
        END $$""",
    """CREATE TRIGGER ledger_entries_no_update_delete BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_refuse_change()""",
    """CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_refuse_change()""",
    f"""CREATE FUNCTION ledger_entries_extend_head() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.seq IS DISTINCT FROM (SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger_entries)
             OR NEW.prev_hash IS DISTINCT FROM COALESCE(
                  (SELECT entry_hash FROM ledger_entries WHERE seq = NEW.seq - 1), '{GENESIS}') THEN
            RAISE EXCEPTION '{EXTEND_HEAD}' USING ERRCODE = 'integrity_constraint_violation';
          END IF;
          RETURN NEW;
        END $$""",
    """CREATE TRIGGER ledger_entries_extend_head BEFORE INSERT ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_extend_head()""",
]


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False
        ),
        sa.Column("event_id", sa.String(128), nullable=False, unique=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False, index=True),
        sa.Column("resource", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("entry_hash", sa.String(64), nullable=False, unique=True),
    )
    statements = POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its triggers on both databases; PostgreSQL keeps the functions.
    op.drop_table("ledger_entries")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_extend_head()")
