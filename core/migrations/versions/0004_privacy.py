"""v4: privacy (erasure requests, data exports).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasure_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("open_key", sa.String(128), unique=True),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("requested_via", sa.String(256)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("lease_until", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("removed", sa.JSON),
    )
    op.create_index("ix_erasure_requests_customer_id", "erasure_requests", ["customer_id"])
    op.create_index("ix_erasure_requests_next_attempt_at", "erasure_requests", ["next_attempt_at"])
    op.create_table(
        "data_exports",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(256)),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("path", sa.String(512)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_data_exports_customer_id", "data_exports", ["customer_id"])


def downgrade() -> None:
    op.drop_table("data_exports")
    op.drop_table("erasure_requests")
