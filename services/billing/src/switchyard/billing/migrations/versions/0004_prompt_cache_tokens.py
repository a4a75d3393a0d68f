"""prompt tokens the provider read from or wrote to its prompt cache, on usage and call entries

Revision ID: bi0004
Revises: bi0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "bi0004"
down_revision = "bi0003"
branch_labels = None
depends_on = None

TABLES = ("usage_entries", "call_usage_entries")
COLUMNS = ("cache_read_tokens", "cache_write_tokens")

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {f"{table}.{column}": 0 for table in TABLES for column in COLUMNS}


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in COLUMNS:
                batch.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in COLUMNS:
                batch.drop_column(column)
