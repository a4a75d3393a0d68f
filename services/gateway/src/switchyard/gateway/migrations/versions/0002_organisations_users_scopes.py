"""organisations, users with roles, key scopes, expiry and rotation

Existing keys keep working: each distinct (tenant, user id) of a key becomes an admin user of its
tenant (before this revision every key could do everything), and every key gets all of its user's scopes.

Revision ID: gw0002
Revises: gw0001
Create Date: 2026-11-22
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "gw0002"
down_revision = "gw0001"
branch_labels = None
depends_on = None
# What the downgrade drops with its rows: `switchyard db downgrade` refuses it while they hold any
# unless --drop-data says so.
DOWNGRADE_DROPS = ("users",)

ALL_SCOPES = "inference admin audit:read billing:read"
# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {
    "api_keys.rotated_to": None,
    "api_keys.expires_at": None,
    "api_keys.scopes": ALL_SCOPES,  # every scope: what a key had before, so nothing is lost
    "tenants.monthly_budget_usd": None,
    "tenants.platform": False,
}


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite supports it): a batch copy of `tenants` would trip the foreign keys.
    op.add_column("tenants", sa.Column("platform", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("tenants", sa.Column("monthly_budget_usd", sa.Float(), nullable=True))
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("plan", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
    )
    op.add_column("api_keys", sa.Column("scopes", sa.String(200), nullable=False, server_default=ALL_SCOPES))
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("rotated_to", sa.String(64), nullable=True))
    conn = op.get_bind()
    # The development organisation `switchyard up` creates is the platform operator's own.
    conn.execute(sa.text("UPDATE tenants SET platform = :yes WHERE name = 'dev'"), {"yes": True})
    owners = conn.execute(
        sa.text("SELECT DISTINCT tenant_id, user_id FROM api_keys WHERE user_id IS NOT NULL")
    ).fetchall()
    users = sa.table(
        "users",
        sa.column("id", sa.String),
        sa.column("tenant_id", sa.String),
        sa.column("email", sa.String),
        sa.column("name", sa.String),
        sa.column("role", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    rows, taken = [], set()
    for t, u in owners:  # a user id seen in two tenants stays with the first (ids are global)
        if u not in taken:
            taken.add(u)
            rows.append(
                {
                    "id": u,
                    "tenant_id": t,
                    "email": f"{u}@localhost",
                    "name": u,
                    "role": "admin",
                    "created_at": now,
                }
            )
    if rows:
        op.bulk_insert(users, rows)


def downgrade() -> None:
    for column in ("rotated_to", "expires_at", "scopes"):
        op.drop_column("api_keys", column)
    op.drop_table("users")
    for column in ("monthly_budget_usd", "platform"):
        op.drop_column("tenants", column)
