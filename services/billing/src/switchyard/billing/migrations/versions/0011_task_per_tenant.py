"""a task is charged once per organisation: the usage entries' unique key is (task_id, tenant_id), not the
task id alone, so two organisations' tasks of one id (ids other systems choose on the bus: `job-1`) are
each charged; before, the second was taken for a redelivery of the first and never charged

Revision ID: bi0011
Revises: bi0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from switchyard.common.db import DowngradeRefused

revision = "bi0011"
down_revision = "bi0010"
branch_labels = None
depends_on = None

NEW = "uq_usage_entries_task_tenant"
# SQLite's constraint from bi0001 has no name: the batch names it by this convention to drop it;
# PostgreSQL's is named by the server.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
OLD = {"postgresql": "usage_entries_task_id_key", "sqlite": "uq_usage_entries_task_id"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("usage_entries", naming_convention=SQLITE_NAMES) as batch:
        batch.drop_constraint(OLD.get(dialect, OLD["sqlite"]), type_="unique")
        batch.create_unique_constraint(NEW, ["task_id", "tenant_id"])


def downgrade() -> None:
    """The task id alone unique again: refused while two organisations have a task of one id (the
    previous schema cannot hold both; one would have to go, with its charge)."""
    shared = op.get_bind().execute(
        sa.text("SELECT task_id FROM usage_entries GROUP BY task_id HAVING COUNT(*) > 1 LIMIT 3")
    )
    ids = [row[0] for row in shared]
    if ids:
        raise DowngradeRefused(
            "billing bi0011 cannot be downgraded: several organisations have a charged task of one id "
            f"({', '.join(ids)}), which bi0010's schema charges once; delete the extra entries first"
        )
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("usage_entries", naming_convention=SQLITE_NAMES) as batch:
        batch.drop_constraint(NEW, type_="unique")
        if dialect == "postgresql":
            batch.create_unique_constraint(OLD["postgresql"], ["task_id"])
        else:
            batch.create_unique_constraint(OLD["sqlite"], ["task_id"])
