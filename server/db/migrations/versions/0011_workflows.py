"""Signature workflows: templates and their versions, workflows, steps, step assignments, single-use link tokens
(SHA-256 of each), the outbound mail queue and the deliveries of completed workflows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflow_templates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("retired_at", _TS, nullable=True),
    )
    op.create_table(
        "workflow_template_versions",
        sa.Column("template_id", sa.Integer, sa.ForeignKey("workflow_templates.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("definition", sa.Text, nullable=False),  # JSON, validated by server.workflows.template
        sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "workflows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("template_id", sa.Integer, sa.ForeignKey("workflow_templates.id"), nullable=False, index=True),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("document_name", sa.String(255), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("document_sha256", sa.String(64), nullable=False),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )
    op.create_table(
        "workflow_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("claimed_until", _TS, nullable=True),
        sa.Column("activated_at", _TS, nullable=True),
        sa.Column("deadline", _TS, nullable=True, index=True),
        sa.Column("next_reminder", _TS, nullable=True, index=True),
        sa.Column("reminders_sent", sa.Integer, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.UniqueConstraint("workflow_id", "position"),
    )
    op.create_table(
        "workflow_assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("step_id", sa.Integer, sa.ForeignKey("workflow_steps.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True, index=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("external", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("acted_at", _TS, nullable=True),
        sa.Column("auth_level", sa.String(16), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("verification", sa.Text, nullable=True),
    )
    op.create_table(
        "workflow_links",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("workflow_assignments.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
    )
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.String(255), nullable=False, unique=True),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", _TS, nullable=False, index=True),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("last_error", sa.String(2000), nullable=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="SET NULL"), nullable=True,
                  index=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
    )
    op.create_table(
        "workflow_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", _TS, nullable=False, index=True),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("last_error", sa.String(2000), nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
    )


def downgrade() -> None:
    for table in ("workflow_deliveries", "mail_outbox", "workflow_links", "workflow_assignments", "workflow_steps", "workflows",
                  "workflow_template_versions", "workflow_templates"):
        op.drop_table(table)
