"""Feedback: when the ticket was first answered and resolved (SLA attainment in the reports).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("first_response_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("first_response_at")
