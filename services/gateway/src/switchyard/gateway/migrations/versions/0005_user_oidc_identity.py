"""a user's identity-provider account: the OIDC issuer and subject single sign-on binds the user to at
their first login, so that a later token is matched by its account, not by an email address an account
can change

Null on existing users: their next single sign-on links them by email, as before, and binds them then.
Unique together (a unique index; NULLs do not collide on SQLite or PostgreSQL): one account, one user.

Revision ID: gw0005
Revises: gw0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "gw0005"
down_revision = "gw0004"
branch_labels = None
depends_on = None

# The columns the downgrade drops, with the value that holds nothing (None: NULL): `switchyard db
# downgrade` refuses it while a row holds another unless --drop-data says so.
DOWNGRADE_DROPS_COLUMNS = {"users.oidc_issuer": None, "users.oidc_subject": None}


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX (SQLite supports both): a batch copy of `users` is not needed.
    op.add_column("users", sa.Column("oidc_issuer", sa.String(500), nullable=True))
    op.add_column("users", sa.Column("oidc_subject", sa.String(255), nullable=True))
    op.create_index("uq_users_oidc_identity", "users", ["oidc_issuer", "oidc_subject"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_oidc_identity", table_name="users")
    op.drop_column("users", "oidc_subject")
    op.drop_column("users", "oidc_issuer")
