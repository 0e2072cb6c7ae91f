"""Run lifecycle in the database: a CHECK constraint on runs.status and a trigger refusing illegal status
changes, the same rules as fqvae_cli.registry.lifecycle (a test checks every pair of statuses against it).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATUSES = ("queued", "running", "finished", "failed", "interrupted")
# old>new: the moves a run may make (lifecycle.TRANSITIONS as of this revision).
MOVES = ("queued>running", "running>finished", "running>failed", "running>interrupted", "running>queued",
         "interrupted>running", "interrupted>queued", "failed>running", "failed>queued")

_CHECK = "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")"
_ILLEGAL = ("OLD.status <> NEW.status AND (OLD.status || '>' || NEW.status) NOT IN ("
            + ", ".join(f"'{m}'" for m in MOVES) + ")")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a CHECK only by rebuilding the table (batch mode; migrations run with foreign keys off,
        # so the rebuild never cascades into metrics or artifacts).
        with op.batch_alter_table("runs") as batch:
            batch.create_check_constraint(op.f("ck_runs_status"), _CHECK)
        op.execute(f"CREATE TRIGGER runs_status_moves BEFORE UPDATE OF status ON runs FOR EACH ROW "
                   f"WHEN {_ILLEGAL} BEGIN SELECT RAISE(ABORT, 'illegal run status change'); END")
    else:
        op.create_check_constraint(op.f("ck_runs_status"), "runs", _CHECK)
        op.execute(f"""CREATE FUNCTION fqvae_runs_status_moves() RETURNS trigger AS $$
BEGIN
    IF {_ILLEGAL} THEN
        RAISE EXCEPTION 'illegal run status change from % to %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql""")
        op.execute("CREATE TRIGGER runs_status_moves BEFORE UPDATE OF status ON runs FOR EACH ROW "
                   "EXECUTE FUNCTION fqvae_runs_status_moves()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS runs_status_moves")
        with op.batch_alter_table("runs") as batch:
            batch.drop_constraint(op.f("ck_runs_status"), type_="check")
    else:
        op.execute("DROP TRIGGER IF EXISTS runs_status_moves ON runs")
        op.execute("DROP FUNCTION IF EXISTS fqvae_runs_status_moves()")
        op.drop_constraint(op.f("ck_runs_status"), "runs", type_="check")
