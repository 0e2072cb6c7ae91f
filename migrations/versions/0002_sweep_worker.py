"""Sweep workers: runs.worker, and a (status, created_at) index for taking the oldest queued run.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("worker", sa.String(255), nullable=True))
    # The new index starts with status, so the plain status index becomes redundant.
    op.drop_index("ix_runs_status", table_name="runs")
    op.create_index("ix_runs_queue", "runs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_queue", table_name="runs")
    op.create_index("ix_runs_status", "runs", ["status"])
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("worker")
