"""v5: sentiment of customer messages.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_sentiment",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(192), nullable=False),
        sa.Column("message_id", sa.String(64)),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("negative", sa.Float, nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("score", sa.Float),
        sa.Column("ts", sa.Float, nullable=False),
        sa.UniqueConstraint("conversation_id", "message_id", name="uq_message_sentiment"),
    )
    op.create_index("ix_message_sentiment_ts", "message_sentiment", ["ts"])
    op.create_index("ix_message_sentiment_conversation_id", "message_sentiment", ["conversation_id"])


def downgrade() -> None:
    op.drop_table("message_sentiment")
