"""Predictions: the text signals that fired (`Decision.text_signals_text`); older rows: null.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("text_signals", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("text_signals")
