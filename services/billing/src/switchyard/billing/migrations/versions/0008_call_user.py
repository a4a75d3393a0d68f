"""the user of a billable call (a race's loser, a cascade's rejected step, a cut call): the task's, whose
budget the gateway charges it to; NULL for calls charged before (they stay counted under no user)

Revision ID: bi0008
Revises: bi0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "bi0008"
down_revision = "bi0007"
branch_labels = None
depends_on = None
# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {"call_usage_entries.user_id": None}


def upgrade() -> None:
    with op.batch_alter_table("call_usage_entries") as batch:
        batch.add_column(sa.Column("user_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_usage_entries") as batch:
        batch.drop_column("user_id")
