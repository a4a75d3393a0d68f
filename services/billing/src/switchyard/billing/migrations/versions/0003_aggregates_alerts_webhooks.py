"""daily usage aggregates (backfilled from the entries), budget alerts, webhook endpoints and deliveries

Revision ID: bi0003
Revises: bi0002
Create Date: 2026-11-22
"""

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "bi0003"
down_revision = "bi0002"
branch_labels = None
depends_on = None
# What the downgrade drops with its rows: `switchyard db downgrade` refuses it while they hold any
# unless --drop-data says so.
DOWNGRADE_DROPS = ("webhook_deliveries", "webhook_endpoints", "budget_alerts", "usage_daily")

E10 = Decimal(10) ** 10


def upgrade() -> None:
    usage_daily = op.create_table(
        "usage_daily",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("tier", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_e10", sa.BigInteger(), nullable=False),
        sa.Column("unpriced", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_usage_daily_tenant_day", "usage_daily", ["tenant_id", "day"])
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("threshold_pct", sa.Integer(), nullable=False),
        sa.Column("limit_e10", sa.BigInteger(), nullable=False),
        sa.Column("spent_e10", sa.BigInteger(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "scope", "account", "period", "threshold_pct"),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("secret_encrypted", sa.String(500), nullable=False),
        sa.Column("secret_hint", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("endpoint_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
    )
    _backfill(usage_daily)


def _day(value: object) -> object:
    if isinstance(value, str):  # SQLite without type processing
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.date()


def _backfill(usage_daily: sa.Table) -> None:
    """Entries recorded before this revision are counted here, once; later ones as they are recorded."""
    bind = op.get_bind()
    sums: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    queries = (
        (
            "task",
            "SELECT tenant_id, user_id, model, tier, prompt_tokens, completion_tokens, cost_usd, "
            "priced, created_at FROM usage_entries",
        ),
        (
            "call",
            "SELECT tenant_id, NULL, model, 'call', prompt_tokens, completion_tokens, cost_usd, "
            "priced, created_at FROM call_usage_entries",
        ),
    )
    for kind, query in queries:
        for tenant, user, model, tier, prompt, completion, cost, priced, created in bind.execute(
            sa.text(query)
        ):
            row = sums[(tenant, _day(created), user or "", model, tier, kind)]
            row[0] += 1
            row[1] += prompt
            row[2] += completion
            row[3] += int((Decimal(str(cost)).quantize(Decimal("1e-10")) * E10).to_integral_value())
            row[4] += 0 if priced else 1
    if sums:
        op.bulk_insert(
            usage_daily,
            [
                {
                    "tenant_id": k[0],
                    "day": k[1],
                    "user_id": k[2],
                    "model": k[3],
                    "tier": k[4],
                    "kind": k[5],
                    "requests": v[0],
                    "prompt_tokens": v[1],
                    "completion_tokens": v[2],
                    "cost_e10": v[3],
                    "unpriced": v[4],
                }
                for k, v in sums.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("budget_alerts")
    op.drop_index("ix_usage_daily_tenant_day", table_name="usage_daily")
    op.drop_table("usage_daily")
