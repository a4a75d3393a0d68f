"""opt-in outcome feature store

Revision ID: cl0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "cl0001"
down_revision = None
branch_labels = None
depends_on = None

# the features of opted-in tenants' tasks: `switchyard db downgrade` keeps them unless --drop-data
DOWNGRADE_DROPS = ("classifier_outcome_features",)


def upgrade() -> None:
    op.create_table(
        "classifier_outcome_features",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("embedding_model_sha256", sa.String(64), nullable=False),
        sa.Column("features_version", sa.String(32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.UniqueConstraint("tenant_id", "task_id"),
    )


def downgrade() -> None:
    op.drop_table("classifier_outcome_features")
