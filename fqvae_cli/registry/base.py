"""The registry's connection plumbing: one engine per process, one transaction per call with lock
retries, the server's clock, and the row helpers the store's methods share.

On SQLite, writes take the lock up front (BEGIN IMMEDIATE) and a transaction that still meets a lock is
retried with exponential backoff; on PostgreSQL, deadlocks and serialization failures are retried the
same way. Any other database failure becomes a RegistryError with one sentence. Times come from the
database server's clock on PostgreSQL (now()), so heartbeats written by many machines compare fairly;
a SQLite registry is one file on one machine, whose clock is used."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from fqvae_cli import paths
from fqvae_cli.errors import NotFoundError, UsageError
from fqvae_cli.registry import migrate
from fqvae_cli.registry.records import RunRecord, provenance_key
from fqvae_cli.registry.schema import Artifact, Metric, Provenance, Run, RunStart

T = TypeVar("T")
# How long a write keeps retrying a locked SQLite database before giving up with a RegistryError.
LOCK_PATIENCE_S = 120.0
RUNS, METRICS, ARTIFACTS = Run.__table__, Metric.__table__, Artifact.__table__
PROVENANCE, STARTS = Provenance.__table__, RunStart.__table__
# INSERT ... ON CONFLICT DO NOTHING, by engine (the two fqvae supports).
_UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the {what} cannot be stored as JSON ({exc}).") from exc


class Connection:
    """The results registry at `url` (default: paths.registry_url()), created at head on first use."""

    def __init__(self, url: str | None = None):
        self.url = paths.registry_url(url)
        self.display_url = migrate.display_url(self.url)
        self._sqlite = migrate.is_sqlite(self.url)
        if self._sqlite and migrate.sqlite_path(self.url) is None:
            raise UsageError(f"'{self.display_url}' is an in-memory registry, which forgets every run when the "
                             "command ends; give a file, e.g. sqlite:///PATH/registry.db.")
        self._engine = migrate.make_engine(self.url)
        try:
            self.schema = migrate.ensure_schema(self._engine, self.url)
        except BaseException:
            self._engine.dispose()
            raise

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, fn: Callable[[Any], T], *, write: bool) -> T:
        """Run fn(connection) in one transaction, retrying lock conflicts (migrate.with_retries)."""
        def attempt() -> T:
            with self._engine.connect() as conn:
                if write:
                    conn = conn.execution_options(**{migrate.WRITE: True})
                with conn.begin():
                    return fn(conn)

        try:
            return migrate.with_retries(attempt, LOCK_PATIENCE_S, lambda exc: isinstance(
                exc, (DBAPIError, sqlite3.Error)) and migrate.is_transient(exc))
        except (DBAPIError, sqlite3.Error) as exc:
            raise migrate.registry_error(exc, self.url) from exc

    def _now(self) -> Any:
        """The current time as the server sees it: now() on PostgreSQL, this machine's UTC for SQLite
        (stored naive, as SQLite has no time zones)."""
        if self._sqlite:
            return datetime.now(timezone.utc).replace(tzinfo=None)

        return func.now()

    def _stamp(self, value: datetime | None) -> datetime | None:
        """A recorded time (aware, or naive UTC) as this engine stores it: naive UTC on SQLite."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise UsageError(f"a recorded time must be a datetime, not {value!r}.")
        aware = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return aware.replace(tzinfo=None) if self._sqlite else aware

    def _clock(self, conn: Any) -> datetime:
        """The server's current time as an aware UTC datetime, to compare with records' times."""
        if self._sqlite:
            return datetime.now(timezone.utc)

        return conn.execute(select(func.now())).scalar_one().astimezone(timezone.utc)

    def _get(self, conn: Any, run_id: str, *, lock: bool = False) -> RunRecord:
        stmt = select(RUNS).where(RUNS.c.id == run_id)
        row = conn.execute(stmt.with_for_update() if lock else stmt).first()
        if row is None:
            raise NotFoundError(f"no run with id '{run_id}' in {self.display_url}.")
        return RunRecord.from_row(row)

    def _provenance_ids(self, conn: Any, records: Any) -> dict[str, int]:
        """{sha256: id} of provenance records, each stored once: an unknown one is inserted (a concurrent
        insert of the same record by another process is no conflict; both read back the one row)."""
        keys = dict(provenance_key(d)[::-1] for d in records if d is not None)
        ids: dict[str, int] = {}
        for digest, text in keys.items():
            found = conn.execute(select(PROVENANCE.c.id).where(PROVENANCE.c.sha256 == digest)).scalar()
            if found is None:
                stmt = _UPSERT[conn.dialect.name](PROVENANCE).on_conflict_do_nothing(index_elements=["sha256"])
                conn.execute(stmt.values(sha256=digest, details=text, created_at=self._now()))
                found = conn.execute(select(PROVENANCE.c.id).where(PROVENANCE.c.sha256 == digest)).scalar_one()
            ids[digest] = found
        return ids

    def _update(self, run_id: str, values: dict[str, Any], where: Any = None) -> int:
        def fn(conn: Any) -> int:
            stmt = update(RUNS).where(RUNS.c.id == run_id)
            if where is not None:
                stmt = stmt.where(where)
            n = conn.execute(stmt.values(**values)).rowcount
            if n == 0:
                self._get(conn, run_id)  # raises NotFoundError for an unknown id
            return n

        return self._tx(fn, write=True)
