"""the keys a key was minted by: their lineages' ids (`ApiKey.counts_as`), nearest first, whose budgets
its spend also counts against, so a key's budget bounds what the keys it mints spend too

Null on existing keys and on keys made by an operator's tool or an identity provider's token: such a key
counts against its own budget only, as before.

Revision ID: gw0008
Revises: gw0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "gw0008"
down_revision = "gw0007"
branch_labels = None
depends_on = None

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {"api_keys.ancestors": None}


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite supports it): a batch copy of `api_keys` would trip the foreign keys.
    op.add_column("api_keys", sa.Column("ancestors", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "ancestors")
