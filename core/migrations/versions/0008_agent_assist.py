"""v8: agent assist (drafts offered, what the agent sent).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assist_replies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(192), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("draft_source", sa.String(32)),
        sa.Column("draft_id", sa.String(128)),
        sa.Column("draft_text", sa.Text),
        sa.Column("sent_text", sa.Text, nullable=False),
        sa.Column("similarity", sa.Float),
        sa.Column("best_similarity", sa.Float),
        sa.Column("review_item", sa.Integer),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_assist_replies_ts", "assist_replies", ["ts"])
    op.create_index("ix_assist_replies_conversation_id", "assist_replies", ["conversation_id"])


def downgrade() -> None:
    op.drop_table("assist_replies")
