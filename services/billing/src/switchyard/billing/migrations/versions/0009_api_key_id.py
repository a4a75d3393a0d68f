"""the API key of each usage entry and call entry (its id, never its secret), and a key column in the daily
aggregates' primary key, so per-key budgets reconcile from billing (`group_by=key`); "" (no key known) in
the aggregates and NULL on the entries charged before

Revision ID: bi0009
Revises: bi0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from switchyard.common.db import new_primary_key

revision = "bi0009"
down_revision = "bi0008"
branch_labels = None
depends_on = None

DAILY_KEY = ["tenant_id", "day", "user_id", "model", "tier", "kind"]
# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {
    "usage_entries.api_key_id": None,
    "call_usage_entries.api_key_id": None,
    # the daily rows are summed over keys (the totals kept), their split by key lost
    "usage_daily.api_key_id": "",
}


def upgrade() -> None:
    for table in ("usage_entries", "call_usage_entries"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("api_key_id", sa.String(64), nullable=True))
    # The primary key gains a column: SQLite rebuilds the table, PostgreSQL swaps the constraint.
    postgres = op.get_bind().dialect.name == "postgresql"
    with (
        new_primary_key("usage_daily"),
        op.batch_alter_table("usage_daily", recreate="auto" if postgres else "always") as batch,
    ):
        batch.add_column(sa.Column("api_key_id", sa.String(64), nullable=False, server_default=""))
        if postgres:
            batch.drop_constraint("usage_daily_pkey", type_="primary")
        batch.create_primary_key("usage_daily_pkey", [*DAILY_KEY[:3], "api_key_id", *DAILY_KEY[3:]])


def downgrade() -> None:
    """Each day's rows of several keys are summed back into one per user, model, tier and kind."""
    sums = (
        "requests, prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, cost_e10, "
        "unpriced, estimated"
    )
    key = ", ".join(DAILY_KEY)
    summed = ", ".join(f"SUM({c.strip()}) AS {c.strip()}" for c in sums.split(","))
    op.execute(f"CREATE TABLE usage_daily_keyless AS SELECT {key}, {summed} FROM usage_daily GROUP BY {key}")
    op.execute("DELETE FROM usage_daily")
    postgres = op.get_bind().dialect.name == "postgresql"
    with (
        new_primary_key("usage_daily"),
        op.batch_alter_table("usage_daily", recreate="auto" if postgres else "always") as batch,
    ):
        if postgres:
            batch.drop_constraint("usage_daily_pkey", type_="primary")
        batch.drop_column("api_key_id")
        batch.create_primary_key("usage_daily_pkey", DAILY_KEY)
    op.execute(f"INSERT INTO usage_daily ({key}, {sums}) SELECT * FROM usage_daily_keyless")
    op.execute("DROP TABLE usage_daily_keyless")
    for table in ("call_usage_entries", "usage_entries"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("api_key_id")
