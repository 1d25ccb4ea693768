"""Helpdesk webhook deliveries: one row per (helpdesk, delivery id), the answer given.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("helpdesk", sa.String(20), primary_key=True),
        sa.Column("delivery_id", sa.String(200), primary_key=True),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_ticket_id", "webhook_deliveries", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_ticket_id", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
