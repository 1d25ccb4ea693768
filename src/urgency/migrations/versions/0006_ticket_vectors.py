"""Similar tickets: each scored ticket's sentence vector (the shared MiniLM encoder's), from which
the similar-tickets index beside the store is rebuilt (`urgency.similar`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticket_vectors",
        sa.Column("ticket_id", sa.String(200), primary_key=True),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ticket_vectors_scope", "ticket_vectors", ["scope", "stored_at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_vectors_scope", "ticket_vectors")
    op.drop_table("ticket_vectors")
