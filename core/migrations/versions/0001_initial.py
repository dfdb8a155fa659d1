"""v1: customers, items, interactions, answer ratings, handoffs, review queue.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Personal columns are TEXT / JSON here; core.db reads and writes them through
# core.crypto's EncryptedText / EncryptedJSON.


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("segment", sa.String(64)),
        sa.Column("age_band", sa.String(32)),
        sa.Column("attributes", sa.JSON),
        sa.Column("suggestions_opt_out", sa.Boolean, nullable=False),
        sa.Column("synthetic", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("tags", sa.JSON),
        sa.Column("url", sa.String(512)),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "interactions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(128)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("topic", sa.String(128)),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("conversation_id", sa.String(128)),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_interactions_ts", "interactions", ["ts"])
    op.create_index("ix_interactions_item_id", "interactions", ["item_id"])
    op.create_index("ix_interactions_customer_id", "interactions", ["customer_id"])
    op.create_table(
        "answer_ratings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(128), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("customer_id", sa.String(128)),
        sa.Column("conversation_id", sa.String(128)),
        sa.Column("source", sa.String(32)),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_answer_ratings_answer_id", "answer_ratings", ["answer_id"])
    op.create_table(
        "handoffs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(128)),
        sa.Column("channel", sa.String(32)),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agent", sa.String(128)),
        sa.Column("summary", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_handoffs_conversation_id", "handoffs", ["conversation_id"])
    op.create_table(
        "review_queue",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(128)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("predicted_intent", sa.String(128)),
        sa.Column("confidence", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assigned_intent", sa.String(128)),
        sa.Column("answer", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("review_queue", "handoffs", "answer_ratings", "interactions", "items", "customers"):
        op.drop_table(table)
