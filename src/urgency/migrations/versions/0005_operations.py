"""Operations: each ticket's open/closed state, agents' availability, assignments (and
reassignments), and the feedback's status, assignee and customer satisfaction.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("status", sa.String(20)))
        batch.add_column(sa.Column("assignee", sa.String(200)))
        batch.add_column(sa.Column("csat", sa.Float))
    op.create_table(
        "ticket_states",
        sa.Column("ticket_id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team", sa.String(200)),
        sa.Column("assignee", sa.String(200)),
        sa.Column("source", sa.String(40), nullable=False),
    )
    op.create_index("ix_ticket_states_status", "ticket_states", ["status"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent", sa.String(200)),
        sa.Column("team", sa.String(200), nullable=False),
        sa.Column("priority", sa.String(50)),
        sa.Column("strategy", sa.String(40), nullable=False),
        sa.Column("reassignment", sa.Boolean, nullable=False),
        sa.Column("previous_agent", sa.String(200)),
        sa.Column("previous_team", sa.String(200)),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
    )
    op.create_index("ix_assignments_ticket_id", "assignments", ["ticket_id"])
    op.create_table(
        "agent_availability",
        sa.Column("agent", sa.String(200), primary_key=True),
        sa.Column("available", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_availability")
    op.drop_index("ix_assignments_ticket_id", "assignments")
    op.drop_table("assignments")
    op.drop_index("ix_ticket_states_status", "ticket_states")
    op.drop_table("ticket_states")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("csat")
        batch.drop_column("assignee")
        batch.drop_column("status")
