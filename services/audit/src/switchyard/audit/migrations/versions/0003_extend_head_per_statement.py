"""PostgreSQL: check that an INSERT extends the head once per statement, not once per row

The rule is unchanged (the new rows continue the seq from the head without a gap, each links to its
predecessor's entry_hash), but it is checked with set queries over the statement's transition table, so a
batch of 500 entries costs a few index lookups instead of 1,000 PL/pgSQL queries. SQLite keeps its row trigger
(it is cheap there).

Revision ID: au0003
Revises: au0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "au0003"
down_revision = "au0002"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
EXTEND_HEAD = (
    "ledger_entries: an insert must extend the head (seq = head seq + 1, prev_hash = head entry_hash)"
)

UPGRADE = [
    "DROP TRIGGER IF EXISTS ledger_entries_extend_head ON ledger_entries",
    f"""CREATE FUNCTION ledger_entries_extend_head_rows() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE lo bigint; hi bigint; n bigint;
        BEGIN
          SELECT min(seq), max(seq), count(*) INTO lo, hi, n FROM new_rows;
          IF n = 0 THEN RETURN NULL; END IF;
          IF hi - lo + 1 <> n
             OR (SELECT COALESCE(max(seq), 0) FROM ledger_entries WHERE seq < lo) <> lo - 1
             OR (SELECT max(seq) FROM ledger_entries) <> hi
             OR EXISTS (
                  SELECT 1 FROM new_rows r LEFT JOIN ledger_entries p ON p.seq = r.seq - 1
                  WHERE r.prev_hash IS DISTINCT FROM COALESCE(p.entry_hash, '{GENESIS}')
                     OR (p.seq IS NULL AND r.seq <> 1)) THEN
            RAISE EXCEPTION '{EXTEND_HEAD}' USING ERRCODE = 'integrity_constraint_violation';
          END IF;
          RETURN NULL;
        END $$""",
    """CREATE TRIGGER ledger_entries_extend_head AFTER INSERT ON ledger_entries
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
        EXECUTE FUNCTION ledger_entries_extend_head_rows()""",
]

DOWNGRADE = [
    "DROP TRIGGER IF EXISTS ledger_entries_extend_head ON ledger_entries",
    "DROP FUNCTION IF EXISTS ledger_entries_extend_head_rows()",
    """CREATE TRIGGER ledger_entries_extend_head BEFORE INSERT ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_extend_head()""",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
