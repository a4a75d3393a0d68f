"""the version of the policy that priced each usage entry, task and call (NULL for entries stored before:
which policy priced them was not recorded)

Revision ID: bi0007
Revises: bi0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "bi0007"
down_revision = "bi0006"
branch_labels = None
depends_on = None

TABLES = ("usage_entries", "call_usage_entries")

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {f"{table}.policy_version": None for table in TABLES}


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("policy_version", sa.String(200), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("policy_version")
