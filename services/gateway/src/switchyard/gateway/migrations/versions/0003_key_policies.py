"""per-key policies: a model allow-list, requests and tokens per minute, a budget per day or month

Every column is nullable and null on existing keys: a key without them is admitted as before.

Revision ID: gw0003
Revises: gw0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "gw0003"
down_revision = "gw0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("models", sa.JSON()),
    ("rpm_limit", sa.Integer()),
    ("tpm_limit", sa.Integer()),
    ("max_budget_usd", sa.Float()),
    ("budget_duration", sa.String(8)),
)

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {f"api_keys.{name}": None for name, _ in COLUMNS}


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite supports it): a batch copy of `api_keys` would trip the foreign keys.
    for name, type_ in COLUMNS:
        op.add_column("api_keys", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("api_keys", name)
