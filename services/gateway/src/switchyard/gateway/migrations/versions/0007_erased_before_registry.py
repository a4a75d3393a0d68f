"""organisations erased before gw0006 get their erasure time, so the tenant registry marks them erased

Before gw0006 an erasure left no mark on the organisation's row, only every user of it disabled (and
every key revoked). Nothing else disables an organisation's every user: its last enabled admin cannot be
disabled (409), and single sign-on already calls such an organisation closed (`organization_closed`).
So an organisation (not the platform's own) with at least one user and none enabled was erased: its
erasure time is its last user's disabling. The gateway's next registry sync then writes it as erased, and
the pipeline refuses its tasks, without `switchyard org erase <id> --yes` being run again.

Revision ID: gw0007
Revises: gw0006
Create Date: 2026-12-06
"""

from alembic import op

revision = "gw0007"
down_revision = "gw0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE tenants SET erased_at = (
            SELECT MAX(users.disabled_at) FROM users WHERE users.tenant_id = tenants.id
        )
        WHERE erased_at IS NULL
          AND NOT platform
          AND EXISTS (SELECT 1 FROM users WHERE users.tenant_id = tenants.id)
          AND NOT EXISTS (
              SELECT 1 FROM users WHERE users.tenant_id = tenants.id AND users.disabled_at IS NULL
          )
        """
    )


def downgrade() -> None:
    pass  # the erasure times stay: an erased organisation is not brought back
