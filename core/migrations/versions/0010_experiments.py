"""v10: experiments: each customer's arm (fixed at the first exposure) and every exposure.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_assignments",
        sa.Column("experiment", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("assigned_at", sa.Float, nullable=False),
    )
    op.create_table(
        "experiment_exposures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment", sa.String(64), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(192)),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_experiment_exposures_experiment", "experiment_exposures", ["experiment"])
    op.create_index("ix_experiment_exposures_customer_id", "experiment_exposures", ["customer_id"])
    op.create_index("ix_experiment_exposures_ts", "experiment_exposures", ["ts"])


def downgrade() -> None:
    op.drop_table("experiment_exposures")
    op.drop_table("experiment_assignments")
