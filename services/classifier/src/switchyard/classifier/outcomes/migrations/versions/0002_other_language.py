"""outcome features: whether the prompt is in another Latin-script language (which type head reads it)

Revision ID: cl0002
Revises: cl0001
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "cl0002"
down_revision = "cl0001"
branch_labels = None
depends_on = None
# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {"classifier_outcome_features.other_language": False}


def upgrade() -> None:
    with op.batch_alter_table("classifier_outcome_features") as batch:
        batch.add_column(sa.Column("other_language", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("classifier_outcome_features") as batch:
        batch.drop_column("other_language")
