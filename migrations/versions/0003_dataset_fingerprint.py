"""Dataset identity: runs.dataset_fingerprint, the prepared dataset a run was trained on.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: runs recorded before this revision do not know their data.
    op.add_column("runs", sa.Column("dataset_fingerprint", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("dataset_fingerprint")
