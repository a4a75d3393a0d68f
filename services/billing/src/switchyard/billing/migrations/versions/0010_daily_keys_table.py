"""the daily aggregates per API key in a table of their own (`usage_daily_keys`), and `usage_daily` back to
its key of before bi0009 (summed over keys): billing replicas of the previous release count their entries
with an upsert on that key, and failed every one on bi0009's table (expand, not change, while old code runs)

Revision ID: bi0010
Revises: bi0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from switchyard.common.db import new_primary_key

revision = "bi0010"
down_revision = "bi0009"
branch_labels = None
depends_on = None
# What the downgrade drops with its rows: `switchyard db downgrade` refuses it while they hold any
# unless --drop-data says so.
DOWNGRADE_DROPS = ("usage_daily_keys",)

DAILY_KEY = ["tenant_id", "day", "user_id", "model", "tier", "kind"]
KEYED = [*DAILY_KEY[:3], "api_key_id", *DAILY_KEY[3:]]
SUMS = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_e10",
    "unpriced",
    "estimated",
]


def _daily_columns(key: list[str]) -> list[sa.Column[object]]:
    lengths = {"tenant_id": 64, "user_id": 64, "api_key_id": 64, "model": 200, "tier": 32, "kind": 8}
    columns: list[sa.Column[object]] = [
        sa.Column(name, sa.Date() if name == "day" else sa.String(lengths[name]), primary_key=True)
        for name in key
    ]
    for name in SUMS:
        default = "0" if name in ("cache_read_tokens", "cache_write_tokens", "estimated") else None
        columns.append(sa.Column(name, sa.BigInteger(), nullable=False, server_default=default))
    return columns


def _rekey(key: list[str], source: str) -> None:
    """usage_daily's rows replaced by `source`'s, summed under `key` (SQLite rebuilds the table, PostgreSQL
    swaps the constraint)."""
    cols = ", ".join(key)
    summed = ", ".join(f"SUM({c}) AS {c}" for c in SUMS)
    op.execute(f"CREATE TABLE usage_daily_summed AS SELECT {cols}, {summed} FROM {source} GROUP BY {cols}")
    op.execute("DELETE FROM usage_daily")
    postgres = op.get_bind().dialect.name == "postgresql"
    with (
        new_primary_key("usage_daily"),
        op.batch_alter_table("usage_daily", recreate="auto" if postgres else "always") as batch,
    ):
        if postgres:
            batch.drop_constraint("usage_daily_pkey", type_="primary")
        if "api_key_id" in key:
            batch.add_column(sa.Column("api_key_id", sa.String(64), nullable=False, server_default=""))
        else:
            batch.drop_column("api_key_id")
        batch.create_primary_key("usage_daily_pkey", key)
    sums = ", ".join(SUMS)
    op.execute(f"INSERT INTO usage_daily ({cols}, {sums}) SELECT {cols}, {sums} FROM usage_daily_summed")
    op.execute("DROP TABLE usage_daily_summed")


def upgrade() -> None:
    op.create_table("usage_daily_keys", *_daily_columns(KEYED))
    keyed, sums = ", ".join(KEYED), ", ".join(SUMS)
    op.execute(f"INSERT INTO usage_daily_keys ({keyed}, {sums}) SELECT {keyed}, {sums} FROM usage_daily")
    _rekey(DAILY_KEY, "usage_daily")


def downgrade() -> None:
    """bi0009's usage_daily: the rows per key, and what only usage_daily counted (entries of replicas of a
    release before bi0009, written meanwhile) under no key ("")."""
    keyed, sums = ", ".join(KEYED), ", ".join(SUMS)
    key = ", ".join(DAILY_KEY)
    summed = ", ".join(f"SUM({c}) AS {c}" for c in SUMS)
    op.execute(f"CREATE TABLE keys_summed AS SELECT {key}, {summed} FROM usage_daily_keys GROUP BY {key}")
    on = " AND ".join(f"d.{c} = k.{c}" for c in DAILY_KEY)
    rest = ", ".join(f"d.{c} - COALESCE(k.{c}, 0) AS {c}" for c in SUMS)
    op.execute(
        f"CREATE TABLE daily_rebuilt AS SELECT {keyed}, {sums} FROM usage_daily_keys UNION ALL "
        f"SELECT {', '.join(f'd.{c}' for c in DAILY_KEY[:3])}, '' AS api_key_id, "
        f"{', '.join(f'd.{c}' for c in DAILY_KEY[3:])}, {rest} FROM usage_daily d "
        f"LEFT JOIN keys_summed k ON {on} WHERE d.requests > COALESCE(k.requests, 0)"
    )
    _rekey(KEYED, "daily_rebuilt")
    op.execute("DROP TABLE daily_rebuilt")
    op.execute("DROP TABLE keys_summed")
    op.drop_table("usage_daily_keys")
