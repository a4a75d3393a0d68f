"""Per-tenant keys for the ledger's keyed digests (HMAC-SHA256 of a prompt, an embedding's inputs and vectors)

Entries written from this revision on carry `prompt_hmac_sha256` (and `input_hmac_sha256`,
`embedding.hmac_sha256`) under their tenant's key instead of a plain SHA-256 that anyone could confirm a
guessed prompt against. The table is not append-only: erasing an organisation deletes its key (its row
stays, without one). Entries written before keep their `prompt_sha256`; nothing in the ledger changes.
The downgrade drops the table and with it every key: every keyed digest becomes unconfirmable.

Revision ID: au0005
Revises: au0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "au0005"
down_revision = "au0004"
branch_labels = None
depends_on = None
# What the downgrade drops with its rows: `switchyard db downgrade` refuses it while they hold any
# unless --drop-data says so.
DOWNGRADE_DROPS = ("ledger_digest_keys",)


def upgrade() -> None:
    op.create_table(
        "ledger_digest_keys",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("secret", sa.LargeBinary(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ledger_digest_keys")
