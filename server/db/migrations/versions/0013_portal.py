"""Web portal: server-side sessions (the SHA-256 of the cookie's token; CSRF token; idle and absolute
expiry; whether a second factor was given) and the results of "sign my own document" (the signed file and
its validation report, owned by the account, kept for a short time).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),  # SHA-256 hex of the 256-bit cookie token
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),  # second-factor (password given) | full
        sa.Column("second_factor", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),  # absolute expiry
    )
    op.create_table(
        "portal_results",
        sa.Column("id", sa.String(32), primary_key=True),  # random, 128 bits hex
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("mime_type", sa.String(100), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("report", sa.Text, nullable=False),  # the validation report as JSON
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("portal_results")
    op.drop_table("portal_sessions")
