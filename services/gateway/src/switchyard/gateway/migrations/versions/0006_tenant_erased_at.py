"""an organisation's erasure time: the tenant registry the pipeline reads marks it erased, and its tasks
on the bus are refused

Null on existing organisations: one erased before this version is not known as erased until
`switchyard org erase <id> --yes` runs again (an erasure is idempotent: it counts zeros and sets this).

Revision ID: gw0006
Revises: gw0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "gw0006"
down_revision = "gw0005"
branch_labels = None
depends_on = None

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {"tenants.erased_at": None}


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite supports it): a batch copy of `tenants` would trip the foreign keys.
    op.add_column("tenants", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("tenants", "erased_at")
