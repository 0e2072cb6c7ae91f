"""The registry's tables as SQLAlchemy 2 ORM classes.

The migrations in the top-level `migrations/` folder must produce exactly these tables; a test compares
them. `REVISIONS` lists the migration ids in order so opening a registry can tell "behind", "current" and
"newer than this fqvae" without loading alembic.

Choices worth knowing:
- `runs.config` is JSON kept in a TEXT column: PostgreSQL's JSON type rejects NaN/Infinity, which a
  resolved config may legitimately hold, and no query filters on config (the grouping columns are real
  columns with indexes).
- `metrics.value` is a double; SQLite turns a NaN into NULL (and -0.0 into 0), so those values are
  stored with `value_text` in {"nan", "inf", "-inf", "-0"} (value NULL for the non-finite ones). Both
  engines use the same encoding so a registry copied from one to the other reads the same.
- Timestamps are UTC. PostgreSQL stores them as timestamptz; SQLite stores naive UTC text.
- `provenance` (0005) holds each distinct record of what computed a number (machine, kernels, threads,
  versions; fqvae_cli/provenance.py) once, keyed by the sha256 of its canonical JSON; `run_starts` has one
  row per time a run started training (a resume elsewhere adds one, never replaces the first), and
  `metrics.provenance_id` says what computed each metric row. NULL where a row predates 0005.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fqvae_cli.registry.lifecycle import STATUSES

# Migration ids, oldest first; the last one is the head this code expects.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005")
HEAD = REVISIONS[-1]

# Deterministic constraint names, so migrations can refer to them on every engine.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only gives an auto-incrementing rowid to a column declared exactly INTEGER PRIMARY KEY.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    short_id: Mapped[str] = mapped_column(String(8), unique=True)
    name: Mapped[str | None] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    host: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(32))
    code_revision: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # Added in 0002: which process holds the run (host:pid of a sweep worker or of `fqvae train`).
    worker: Mapped[str | None] = mapped_column(String(255))
    # Added in 0003: JSON identity of the prepared dataset the run was trained on (sizes, image size,
    # source hash), so evaluating or resuming against different data is refused.
    dataset_fingerprint: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Tables group finished runs by dataset, model and profile, then average over seeds.
        Index("ix_runs_group", "dataset", "model", "profile", "seed"),
        # Workers take the oldest queued run first (0002 replaced the plain status index).
        Index("ix_runs_queue", "status", "created_at"),
        # 0004: only the lifecycle's statuses (a trigger, not expressible here, refuses illegal moves).
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status"),
    )


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Double)
    value_text: Mapped[str | None] = mapped_column(String(8))
    step: Mapped[int | None] = mapped_column(BigInteger)
    split: Mapped[str | None] = mapped_column(String(32))
    protocol: Mapped[str | None] = mapped_column(String(64))
    # Added in 0005: what computed this row (NULL: recorded before provenance existed).
    provenance_id: Mapped[int | None] = mapped_column(RowId, ForeignKey("provenance.id"))

    __table_args__ = (Index("ix_metrics_lookup", "run_id", "protocol", "name"),)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_artifacts_lookup", "run_id", "kind"),)


class Provenance(Base):
    """One distinct provenance record (0005); rows of other tables refer to it by id."""

    __tablename__ = "provenance"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    details: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunStart(Base):
    """Each time a run started training (0005): from which iteration, on which host, with what."""

    __tablename__ = "run_starts"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"))
    provenance_id: Mapped[int] = mapped_column(RowId, ForeignKey("provenance.id"))
    step: Mapped[int | None] = mapped_column(BigInteger)
    host: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_run_starts_run", "run_id"),)
