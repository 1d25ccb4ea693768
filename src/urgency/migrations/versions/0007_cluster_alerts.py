"""Repeat-issue cluster alerts (issue 19): one row per alert episode, whichever worker raised
it, with the parent incident created in the helpdesk (`urgency.clusters`, `urgency.writeback`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("burst_hours", sa.Float, nullable=False),
        sa.Column("baseline_per_hour", sa.Float, nullable=False),
        sa.Column("expected", sa.Float, nullable=False),
        sa.Column("p_value", sa.Float, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("ticket_ids", sa.JSON, nullable=False),
        sa.Column("centroid", sa.LargeBinary),
        sa.Column("reports", sa.Integer, nullable=False),
        sa.Column("helpdesk", sa.String(20)),
        sa.Column("incident_id", sa.String(200)),
        sa.Column("incident_url", sa.Text),
    )
    op.create_index("ix_cluster_alerts_last_seen", "cluster_alerts", ["last_seen_at"])
    op.create_index("ix_cluster_alerts_raised", "cluster_alerts", ["raised_at"])


def downgrade() -> None:
    op.drop_index("ix_cluster_alerts_raised", "cluster_alerts")
    op.drop_index("ix_cluster_alerts_last_seen", "cluster_alerts")
    op.drop_table("cluster_alerts")
