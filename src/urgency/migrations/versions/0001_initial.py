"""Predictions and agents' feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FEEDBACK_FIELDS = ("urgency", "category", "sentiment", "priority", "team")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("subject", sa.Text),
        sa.Column("body", sa.Text),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("urgency", sa.String(100)),
        sa.Column("urgency_confidence", sa.Float),
        sa.Column("category", sa.String(100)),
        sa.Column("category_confidence", sa.Float),
        sa.Column("sentiment", sa.String(100)),
        sa.Column("sentiment_confidence", sa.Float),
        sa.Column("priority", sa.String(50), nullable=False),
        sa.Column("team", sa.String(200), nullable=False),
        sa.Column("needs_human_triage", sa.Boolean, nullable=False),
        sa.Column("first_response_due", sa.DateTime(timezone=True)),
        sa.Column("resolution_due", sa.DateTime(timezone=True)),
        sa.Column("decision", sa.JSON, nullable=False),
        sa.Column("model_versions", sa.JSON, nullable=False),
    )
    op.create_index("ix_predictions_ticket_id", "predictions", ["ticket_id"])
    op.create_index("ix_predictions_scored_at", "predictions", ["scored_at"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("agent", sa.String(200)),
        *(sa.Column(name, sa.String(200)) for name in FEEDBACK_FIELDS),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.UniqueConstraint("ticket_id", "event_id", name="uq_feedback_ticket_event"),
    )
    op.create_index("ix_feedback_ticket_id", "feedback", ["ticket_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("predictions")
