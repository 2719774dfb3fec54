"""WS-Security and client certificates: UsernameToken nonces seen (replay protection), API clients'
encrypted PasswordDigest secrets, TLS client certificates mapped to accounts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wss_nonces",
        sa.Column("nonce_hash", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "wss_digest_secrets",
        sa.Column("client_id", sa.Integer, sa.ForeignKey("api_clients.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("secret_enc", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "client_certificates",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("issuer", sa.String(1000), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(1000), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("client_certificates")
    op.drop_table("wss_digest_secrets")
    op.drop_table("wss_nonces")
