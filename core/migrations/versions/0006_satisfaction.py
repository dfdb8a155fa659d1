"""v6: satisfaction ratings (CSAT), one per conversation.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "satisfaction",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(192), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(128)),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("intent", sa.String(128)),
        sa.Column("handled_by", sa.String(16), nullable=False),
        sa.Column("segment", sa.String(64)),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_satisfaction_customer_id", "satisfaction", ["customer_id"])
    op.create_index("ix_satisfaction_ts", "satisfaction", ["ts"])


def downgrade() -> None:
    op.drop_table("satisfaction")
