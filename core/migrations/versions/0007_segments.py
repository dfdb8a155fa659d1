"""v7: customer segments (written by `python -m training.segments`).

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segment_clusters",
        sa.Column("cluster", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("traits", sa.JSON),
        sa.Column("trend", sa.JSON),
        sa.Column("top_topics", sa.JSON),
        sa.Column("silhouette", sa.Float),
        sa.Column("computed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "segment_members",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("cluster", sa.Integer, nullable=False),
        sa.Column("computed_at", sa.Float, nullable=False),
    )
    op.create_index("ix_segment_members_cluster", "segment_members", ["cluster"])


def downgrade() -> None:
    op.drop_table("segment_members")
    op.drop_table("segment_clusters")
