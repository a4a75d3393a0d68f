"""prompt-cache reads and writes in the daily aggregates (backfilled from the entries that have them)

Revision ID: bi0005
Revises: bi0004
Create Date: 2026-12-04
"""

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "bi0005"
down_revision = "bi0004"
branch_labels = None
depends_on = None

COLUMNS = ("cache_read_tokens", "cache_write_tokens")

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {f"usage_daily.{column}": 0 for column in COLUMNS}


def upgrade() -> None:
    with op.batch_alter_table("usage_daily") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.BigInteger(), nullable=False, server_default="0"))
    _backfill()


def _day(value: object) -> object:
    if isinstance(value, str):  # SQLite without type processing
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.date()


def _backfill() -> None:
    """Entries stored since bi0004 may carry cache counts their daily rows do not have yet: added here, once
    (the rows exist: each entry was counted in its row when it was stored)."""
    bind = op.get_bind()
    sums: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0])
    queries = (
        (
            "task",
            "SELECT tenant_id, user_id, model, tier, cache_read_tokens, cache_write_tokens, created_at "
            "FROM usage_entries WHERE cache_read_tokens > 0 OR cache_write_tokens > 0",
        ),
        (
            "call",
            "SELECT tenant_id, NULL, model, 'call', cache_read_tokens, cache_write_tokens, created_at "
            "FROM call_usage_entries WHERE cache_read_tokens > 0 OR cache_write_tokens > 0",
        ),
    )
    for kind, query in queries:
        for tenant, user, model, tier, read, written, created in bind.execute(sa.text(query)):
            row = sums[(tenant, _day(created), user or "", model, tier, kind)]
            row[0] += read
            row[1] += written
    update = sa.text(
        "UPDATE usage_daily SET cache_read_tokens = cache_read_tokens + :read, "
        "cache_write_tokens = cache_write_tokens + :written WHERE tenant_id = :tenant AND day = :day "
        "AND user_id = :user AND model = :model AND tier = :tier AND kind = :kind"
    )
    names = ("tenant", "day", "user", "model", "tier", "kind")
    for key, (read, written) in sums.items():
        bind.execute(update, {"read": read, "written": written, **dict(zip(names, key, strict=True))})


def downgrade() -> None:
    with op.batch_alter_table("usage_daily") as batch:
        for column in COLUMNS:
            batch.drop_column(column)
