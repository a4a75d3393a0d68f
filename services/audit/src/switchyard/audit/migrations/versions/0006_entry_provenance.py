"""Where each event's entry came from: `ledger_entries.provenance`

Entries of an event written from this revision on record the subject it was stored on and who NATS lets
publish there (audit/provenance.py), in entry format v2 (chain.py): inside the hashed bytes. Entries written
before keep NULL and format v1, their bytes and hashes as they were: the ledger verifies unchanged. A plain
ADD COLUMN on both databases (no table copy: SQLite's would drop the append-only triggers); the database's
refusal of UPDATE still holds, so no entry gains (or loses) a provenance afterwards.

The downgrade drops the column: every v2 entry then fails verification (its bytes lose their provenance),
so `switchyard db downgrade` refuses it while an entry has one unless --drop-data says so.

Revision ID: au0006
Revises: au0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "au0006"
down_revision = "au0005"
branch_labels = None
depends_on = None
DOWNGRADE_DROPS_COLUMNS = {"ledger_entries.provenance": None}


def upgrade() -> None:
    op.add_column("ledger_entries", sa.Column("provenance", sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE ledger_entries DROP COLUMN provenance")
