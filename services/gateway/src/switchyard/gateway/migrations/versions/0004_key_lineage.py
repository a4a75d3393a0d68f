"""a key's lineage: the first key of its rotations, whose id its own counters (budget, limits) are kept
under, so that rotating a key does not start its budget afresh

Null on existing keys and on keys not made by a rotation: such a key's counters are its own id's, as before.

Revision ID: gw0004
Revises: gw0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "gw0004"
down_revision = "gw0003"
branch_labels = None
depends_on = None

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {"api_keys.lineage_id": None}


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite supports it): a batch copy of `api_keys` would trip the foreign keys.
    op.add_column("api_keys", sa.Column("lineage_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "lineage_id")
