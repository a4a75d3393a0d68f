"""entries whose token counts are the executor's estimate: a flag on task entries (call entries have one
since bi0002) and their count in the daily aggregates (backfilled from the call entries that have it)

Revision ID: bi0006
Revises: bi0005
Create Date: 2026-12-05
"""

from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "bi0006"
down_revision = "bi0005"
branch_labels = None
depends_on = None
# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {"usage_daily.estimated": 0, "usage_entries.usage_estimated": False}


def upgrade() -> None:
    with op.batch_alter_table("usage_entries") as batch:
        batch.add_column(
            sa.Column("usage_estimated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("usage_daily") as batch:
        batch.add_column(sa.Column("estimated", sa.BigInteger(), nullable=False, server_default="0"))
    _backfill()


def _day(value: object) -> object:
    if isinstance(value, str):  # SQLite without type processing
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.date()


def _backfill() -> None:
    """Calls cut before their answer (a race's loser, a deadline) were stored with estimated counts: each
    is counted in its daily row, which exists (the entry was added to it when it was stored)."""
    bind = op.get_bind()
    counts: Counter[tuple[object, ...]] = Counter()
    query = "SELECT tenant_id, model, created_at FROM call_usage_entries WHERE usage_estimated"
    for tenant, model, created in bind.execute(sa.text(query)):
        counts[(tenant, _day(created), "", model, "call", "call")] += 1
    update = sa.text(
        "UPDATE usage_daily SET estimated = estimated + :n WHERE tenant_id = :tenant AND day = :day "
        "AND user_id = :user AND model = :model AND tier = :tier AND kind = :kind"
    )
    names = ("tenant", "day", "user", "model", "tier", "kind")
    for key, n in counts.items():
        bind.execute(update, {"n": n, **dict(zip(names, key, strict=True))})


def downgrade() -> None:
    with op.batch_alter_table("usage_daily") as batch:
        batch.drop_column("estimated")
    with op.batch_alter_table("usage_entries") as batch:
        batch.drop_column("usage_estimated")
