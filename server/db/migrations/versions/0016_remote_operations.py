"""Remote signing: operations waiting for the user's PIN and OTP in the database (any worker finishes them,
a restart keeps them), and OAuth2 authorization codes / access tokens of the CSC scope ``credential`` bound to
a credential, the exact hashes and a number of signatures.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_operations",
        sa.Column("id", sa.String(64), primary_key=True),  # random, handed to the caller
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("account", sa.String(200), nullable=False),  # remote_signing.accounts_file name
        sa.Column("credential_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # awaiting-otp | signing (one authorisation at a time)
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("hash_algorithm", sa.String(16), nullable=False),
        sa.Column("scheme", sa.String(32), nullable=False),
        sa.Column("hashes", sa.Text, nullable=False),  # JSON list of the to-be-signed digests (hex), in order
        sa.Column("states", sa.Text, nullable=False),  # JSON: the prepared two-step states and audit entries
        sa.Column("otp_sent", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    # nullable columns without constraints: a plain ALTER TABLE ADD COLUMN on SQLite too
    op.add_column("csc_tokens", sa.Column("scope", sa.String(16), nullable=True))  # service (None) | credential
    op.add_column("csc_tokens", sa.Column("credential_id", sa.String(200), nullable=True))
    op.add_column("csc_tokens", sa.Column("num_signatures", sa.Integer, nullable=True))
    op.add_column("csc_tokens", sa.Column("hash_algorithm", sa.String(64), nullable=True))  # OID
    op.add_column("csc_tokens", sa.Column("hashes", sa.Text, nullable=True))  # JSON list of hex


def downgrade() -> None:
    with op.batch_alter_table("csc_tokens") as batch:
        for column in ("hashes", "hash_algorithm", "num_signatures", "credential_id", "scope"):
            batch.drop_column(column)
    op.drop_table("remote_operations")
