"""Merkle nodes, signed checkpoints, archives (append-only) and SIEM export positions

`merkle_nodes` is filled from the entries already in the ledger, so proofs cover them too.
`ledger_checkpoints` accepts only a checkpoint larger than every earlier one and no larger than the ledger.
On PostgreSQL, PUBLIC loses UPDATE, DELETE and TRUNCATE on the append-only tables; the application role
(`switchyard ledger app-role`) is granted only SELECT and INSERT on them.

Revision ID: au0002
Revises: au0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from switchyard.audit.chain import EntryFields, entry_bytes, leaf_hash
from switchyard.audit.tree import extend, frontier

revision = "au0002"
down_revision = "au0001"
branch_labels = None
depends_on = None
# What the downgrade drops with its rows: `switchyard db downgrade` refuses it while they hold any
# unless --drop-data says so.
DOWNGRADE_DROPS = ("merkle_nodes", "ledger_checkpoints", "ledger_archives", "siem_export_positions")

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY_TABLES = ("merkle_nodes", "ledger_checkpoints", "ledger_archives")
GROWS = "ledger_checkpoints: a checkpoint must be larger than the last one and within the ledger"
BACKFILL_PAGE = 5000


def _sqlite(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END""",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END""",
    ]


def _postgresql(table: str) -> list[str]:
    return [
        f"""CREATE FUNCTION {table}_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION '{table} is append-only: % refused', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
            END $$""",
        f"""CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_refuse_change()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse_change()""",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC",
    ]


SQLITE_GROWS = f"""CREATE TRIGGER ledger_checkpoints_grow BEFORE INSERT ON ledger_checkpoints
    WHEN NEW.tree_size <= (SELECT COALESCE(MAX(tree_size), 0) FROM ledger_checkpoints)
      OR NEW.tree_size > (SELECT COALESCE(MAX(seq), 0) FROM ledger_entries)
    BEGIN SELECT RAISE(ABORT, '{GROWS}'); END"""

POSTGRESQL_GROWS = [
    f"""CREATE FUNCTION ledger_checkpoints_grow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.tree_size <= (SELECT COALESCE(MAX(tree_size), 0) FROM ledger_checkpoints)
             OR NEW.tree_size > (SELECT COALESCE(MAX(seq), 0) FROM ledger_entries) THEN
            RAISE EXCEPTION '{GROWS}' USING ERRCODE = 'integrity_constraint_violation';
          END IF;
          RETURN NEW;
        END $$""",
    """CREATE TRIGGER ledger_checkpoints_grow BEFORE INSERT ON ledger_checkpoints
        FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_grow()""",
    "REVOKE UPDATE, DELETE, TRUNCATE ON ledger_entries FROM PUBLIC",
]


def upgrade() -> None:
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", SeqType, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("tree_size", SeqType, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_table(
        "ledger_archives",
        sa.Column("id", SeqType, primary_key=True, autoincrement=True),
        sa.Column("first_seq", SeqType, nullable=False),
        sa.Column("last_seq", SeqType, nullable=False),
        sa.Column("checkpoint_size", SeqType, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "siem_export_positions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("seq", SeqType, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        statements = [s for t in APPEND_ONLY_TABLES for s in _postgresql(t)] + POSTGRESQL_GROWS
    else:
        statements = [s for t in APPEND_ONLY_TABLES for s in _sqlite(t)] + [SQLITE_GROWS]
    for statement in statements:
        op.execute(statement)
    _backfill(bind)


def _backfill(bind: sa.engine.Connection) -> None:
    """Builds the nodes of the entries written before this revision (the stored rows, as they are)."""
    stamp = sa.DateTime(timezone=True)
    # the columns of this revision (format v1): `provenance` came with au0006
    names = [n for n in EntryFields.__slots__ if n != "provenance"]
    columns = [sa.column(n, stamp) if n.endswith("_at") else sa.column(n) for n in names]
    entries = sa.table("ledger_entries", *columns)
    nodes = sa.table("merkle_nodes", sa.column("level"), sa.column("idx"), sa.column("hash"))
    size, edge = 0, dict[tuple[int, int], bytes]()
    while True:
        query = sa.select(entries).where(entries.c.seq > size).order_by(entries.c.seq).limit(BACKFILL_PAGE)
        rows = bind.execute(query).mappings().all()
        if not rows:
            return
        leaves = [leaf_hash(entry_bytes(EntryFields(**dict(r)))) for r in rows]
        made = extend(size, edge, leaves)
        bind.execute(sa.insert(nodes), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in made])
        size += len(rows)
        known = {(lv, ix): h for lv, ix, h in made} | edge
        edge = {node: known[node] for node in frontier(size)}


def downgrade() -> None:
    for table in ("siem_export_positions", "ledger_archives", "ledger_checkpoints", "merkle_nodes"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP FUNCTION IF EXISTS {table}_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS ledger_checkpoints_grow()")
