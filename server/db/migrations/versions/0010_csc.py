"""CSC API server: bearer access tokens and OAuth2 authorization codes of /csc/v2 (SHA-256 of each) and Signature Activation Data
(SHA-256 of the SAD) bound to an account, a credential, the exact hashes and a number of signatures.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "csc_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),  # access | code (OAuth2 authorization code)
        sa.Column("client_id", sa.String(200), nullable=True),  # OAuth2: the API client the token or code is for
        sa.Column("redirect_uri", sa.String(2000), nullable=True),  # OAuth2 code: where it was sent
        sa.Column("code_challenge", sa.String(200), nullable=True),  # OAuth2 code: PKCE S256 challenge
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "csc_sads",
        sa.Column("sad_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("credential_id", sa.String(200), nullable=False),
        sa.Column("hash_algorithm", sa.String(64), nullable=True),  # OID; None: v1 authorisation (no algorithm)
        sa.Column("hashes", sa.Text, nullable=False),  # JSON list of the bound hashes (hex)
        sa.Column("num_signatures", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("csc_sads")
    op.drop_table("csc_tokens")
