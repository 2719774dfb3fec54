"""Company branding: brands (name, logo, colours, footer links, public base URL, mail sender, support contact;
one of them the default) and the brand a workflow template, an API client and a started workflow use.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), unique=True, nullable=False),  # the key: lower-case letters, digits, -
        sa.Column("company_name", sa.String(200), nullable=False),
        sa.Column("primary_color", sa.String(7), nullable=False),  # #rrggbb
        sa.Column("accent_color", sa.String(7), nullable=False),
        sa.Column("text_color", sa.String(7), nullable=False),
        sa.Column("public_base_url", sa.String(500), nullable=True),
        sa.Column("imprint_url", sa.String(500), nullable=True),
        sa.Column("privacy_url", sa.String(500), nullable=True),
        sa.Column("mail_from_name", sa.String(200), nullable=True),
        sa.Column("mail_from_address", sa.String(320), nullable=True),
        sa.Column("support_contact", sa.String(320), nullable=True),
        sa.Column("logo", sa.LargeBinary, nullable=True),  # checked PNG or sanitised SVG
        sa.Column("logo_type", sa.String(16), nullable=True),  # image/png | image/svg+xml
        sa.Column("logo_png", sa.LargeBinary, nullable=True),  # the logo as PNG (stamps, e-mail)
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # SQLite: a plain ADD COLUMN with the REFERENCES clause inline; batch mode would recreate these tables, and
    # with foreign keys on, dropping the old `workflows` would cascade to its steps
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in ("workflow_templates", "api_clients", "workflows"):
        if sqlite:
            op.execute(f"ALTER TABLE {table} ADD COLUMN brand_id INTEGER REFERENCES brands (id) ON DELETE SET NULL")
        else:
            op.add_column(table, sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.id", ondelete="SET NULL"),
                                           nullable=True))


def downgrade() -> None:
    for table in ("workflows", "api_clients", "workflow_templates"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("brand_id")
    op.drop_table("brands")
