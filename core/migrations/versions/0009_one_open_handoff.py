"""v9: at most one open (waiting or active) handoff per conversation, held by the database; when it was taken.

Before this, two processes could each find no open handoff and both insert
one. Duplicates left by that race are closed first (the newest stays: it is
the one the queue showed), then a partial unique index refuses the next.

``taken_at``: when an agent first took the handoff, so the queue can say how
long customers have recently waited (`bot.handoff.queue.HandoffQueue.expected_wait_s`).

Revision ID: 0009
Revises: 0008
"""
import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OPEN = "status IN ('waiting', 'active')"


def upgrade() -> None:
    op.execute(sa.text(
        f"UPDATE handoffs SET status = 'closed', updated_at = :now WHERE {OPEN} AND id NOT IN "
        f"(SELECT newest FROM (SELECT MAX(id) AS newest FROM handoffs WHERE {OPEN} GROUP BY conversation_id) AS kept)"
    ).bindparams(now=time.time()))
    op.create_index("uq_handoffs_open_conversation", "handoffs", ["conversation_id"], unique=True,
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    op.add_column("handoffs", sa.Column("taken_at", sa.Float))


def downgrade() -> None:
    op.drop_index("uq_handoffs_open_conversation", table_name="handoffs")
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("taken_at")
