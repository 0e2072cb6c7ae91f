"""Provenance: what computed each number. A `provenance` table of distinct records (machine, kernels,
threads, library versions) keyed by their sha256, `run_starts` (each time a run started training, with
the record it trained with) and `metrics.provenance_id`. Rows written before this revision keep NULL:
their provenance was not recorded.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "provenance",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provenance"),
        sa.UniqueConstraint("sha256", name="uq_provenance_sha256"),
    )
    op.create_table(
        "run_starts",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("provenance_id", RowId, nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_starts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_starts_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["provenance_id"], ["provenance.id"], name="fk_run_starts_provenance_id_provenance"),
    )
    op.create_index("ix_run_starts_run", "run_starts", ["run_id"])
    # SQLite adds a foreign key only by rebuilding the table (batch mode; migrations run with foreign keys
    # off, so the rebuild cascades nowhere); PostgreSQL adds the nullable column in place.
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("provenance_id", RowId, nullable=True))
        batch.create_foreign_key("fk_metrics_provenance_id_provenance", "provenance", ["provenance_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_constraint("fk_metrics_provenance_id_provenance", type_="foreignkey")
        batch.drop_column("provenance_id")
    op.drop_index("ix_run_starts_run", table_name="run_starts")
    op.drop_table("run_starts")
    op.drop_table("provenance")
