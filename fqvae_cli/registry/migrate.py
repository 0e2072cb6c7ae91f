"""Engines, schema versions and upgrades for the registry.

Upgrade policy (README "Results registry"):
- A database that does not exist yet (or has no tables) is created at the head revision on first use.
- A SQLite registry behind head is upgraded automatically on first use, after a consistent backup copy
  `<file>.backup-<old revision>-<UTC time>` is written beside it. It is a local file with one owner, and a
  copy makes the upgrade reversible.
- Any other engine (PostgreSQL) behind head is refused with a sentence asking for `fqvae db upgrade`: a
  shared server may have workers of the older version still attached, and its backup (pg_dump) is the
  operator's job, so the step is explicit.
- A database written by a newer fqvae, or one holding tables but no fqvae schema version, is refused.

Creation and upgrades happen inside one write transaction that first takes a lock (SQLite: the database's
own write lock via BEGIN IMMEDIATE; PostgreSQL: a transaction-level advisory lock), then re-reads the
version, so many processes opening a fresh database at once create it exactly once.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import column, create_engine, event, func, inspect, select, table
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

import fqvae_cli
from fqvae_cli import paths
from fqvae_cli.errors import RegistryError
from fqvae_cli.files import atomic_path, make_dirs
from fqvae_cli.paths import display_url, is_sqlite, parse_url, sqlite_path
from fqvae_cli.registry.schema import HEAD, REVISIONS

T = TypeVar("T")

# Seconds one statement waits for SQLite's write lock before the store retries with backoff.
BUSY_TIMEOUT_S = 10.0
# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE (take the write lock now).
WRITE = "fqvae_write"
# Arbitrary constant: the PostgreSQL advisory lock that serialises schema creation and upgrades.
_PG_LOCK_KEY = 0x66717661  # "fqva"
_OUR_TABLES = {"runs", "metrics", "artifacts", "provenance", "run_starts"}
_ENGINES: weakref.WeakSet = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A pooled connection inherited through fork() is shared with the parent; using it from both sides
    # corrupts the protocol stream (PostgreSQL) or the locks (SQLite). The child opens its own.
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _where(url: str) -> str:
    path = sqlite_path(url)
    return f"the registry file {path}" if path else f"the registry at {display_url(url)}"


def make_engine(url: str, *, foreign_keys: bool = True, pooled: bool = True) -> Any:
    """An engine with fqvae's connection settings. SQLite: WAL, a busy timeout, FULL sync (a committed
    row survives a power cut), foreign keys, and BEGIN IMMEDIATE for transactions marked WRITE."""
    u = parse_url(url)
    kwargs: dict[str, Any] = {}
    if not pooled:
        kwargs["poolclass"] = NullPool
    sqlite = u.get_backend_name() == "sqlite"
    if sqlite:
        path = sqlite_path(url)
        if path is not None:
            make_dirs(path.parent, f"the registry file {path.name}", RegistryError,
                      "choose another registry with --db or FQVAE_DB, or another workspace with FQVAE_HOME")
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    elif u.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "fqvae"}
    try:
        engine = create_engine(u, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise RegistryError(f"no database driver for {display_url(url)} ({exc}); "
                            "PostgreSQL needs `pip install 'fqvae[postgres]'`.") from exc
    if sqlite:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # sqlite3 must not emit its own BEGIN; the "begin" hook below decides the kind.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                # WAL is a property of the file, switched on by ensure_schema once the file is known to
                # be a registry: setting it here would rewrite the header of any file opened by mistake.
                cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                cur.execute("PRAGMA synchronous = FULL")
                cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A writer takes the lock up front: a deferred transaction that upgrades from read to write
            # fails with "database is locked" immediately instead of waiting on the busy timeout.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    _ENGINES.add(engine)
    return engine


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return line.rstrip(".")


def is_transient(exc: BaseException) -> bool:
    """True for errors where the transaction was rolled back by a lock conflict and may be retried."""
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    # PostgreSQL: serialization failure, deadlock, lock not available.
    return getattr(orig, "sqlstate", None) in ("40001", "40P01", "55P03")


def registry_error(exc: BaseException, url: str) -> RegistryError:
    """One sentence for a database failure."""
    where = _where(url)
    msg = _first_line(exc)
    low = msg.lower()
    if is_sqlite(url):
        if "not a database" in low or "malformed" in low or "encrypted" in low:
            return RegistryError(f"{where} is not a readable SQLite database ({msg}); it was left as it is: "
                                 "restore it from a backup or choose another registry with --db or FQVAE_DB.")
        if "unable to open" in low or "readonly" in low or "read-only" in low:
            return RegistryError(f"cannot open {where} for writing ({msg}).")
        if "locked" in low or "busy" in low:
            return RegistryError(f"{where} stayed locked by another process ({msg}); try again later.")
    elif any(word in low for word in ("connect", "connection", "resolve", "timeout", "host")):
        return RegistryError(f"cannot reach {where} ({msg}).")
    return RegistryError(f"{where} failed ({msg}).")


def migrations_dir() -> Path:
    """The alembic folder shipped inside the package (a link to the top-level migrations/ in a checkout)."""
    return Path(fqvae_cli.__file__).resolve().parent / "migrations"


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config  # heavy: only creating or upgrading a schema needs alembic

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@dataclass(frozen=True)
class SchemaState:
    revision: str | None
    tables: frozenset[str]


def read_state(conn: Any) -> SchemaState:
    """The alembic revision stamped in the database (None without one) and its table names."""
    tables = frozenset(inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        return SchemaState(None, tables)
    rows = conn.execute(select(column("version_num")).select_from(table("alembic_version"))).scalars().all()
    if len(rows) > 1:
        raise RegistryError(f"the registry has several schema heads ({', '.join(rows)}); it needs repair.")
    return SchemaState(rows[0] if rows else None, tables)


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None  # None: the database was created
    after: str
    backup: Path | None


def check_not_foreign(state: SchemaState, url: str) -> None:
    """Raise when a database without an fqvae schema version holds tables: it is something else's (on
    SQLite, any table; on a shared server, only tables of fqvae's names would clash)."""
    if state.revision is not None:
        return
    tables = state.tables - {"alembic_version"}
    foreign = tables & _OUR_TABLES if not is_sqlite(url) else tables
    if foreign:
        raise RegistryError(f"{_where(url)} holds tables ({', '.join(sorted(foreign))}) but no fqvae schema "
                            "version; it is not an fqvae registry, so it was left as it is.")


def _check(state: SchemaState, url: str, *, explicit: bool) -> None:
    """Raise when the schema must not be touched by this process."""
    rev = state.revision
    if rev is None:
        check_not_foreign(state, url)
        return
    if rev not in REVISIONS:
        raise RegistryError(f"{_where(url)} has schema revision {rev}, newer than this fqvae knows "
                            f"(up to {HEAD}); upgrade fqvae to use it.")
    if rev != HEAD and not explicit and not is_sqlite(url):
        raise RegistryError(f"{_where(url)} has schema revision {rev} but this fqvae needs {HEAD}; back it up, "
                            f"then run `fqvae db upgrade --db {display_url(url)}`.")


def backup_sqlite(path: Path, revision: str) -> Path:
    """A consistent copy of a SQLite registry (WAL content included) beside it, written atomically."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.backup-{revision}-{stamp}")
    with atomic_path(target) as tmp:
        src = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    return target


def _locked_upgrade(engine: Any, url: str, target: str, explicit: bool) -> UpgradeResult:
    from alembic import command  # heavy: only creating or upgrading a schema needs alembic

    # Migrations run with foreign keys off: rebuilding a table in SQLite batch mode drops the old copy,
    # which with enforcement on would cascade-delete every child row.
    mig = engine if sqlite_path(url) is None and is_sqlite(url) else make_engine(
        url, foreign_keys=False, pooled=False)
    try:
        with mig.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                state = read_state(conn)
                _check(state, url, explicit=explicit)
                if state.revision == target or (
                        state.revision in REVISIONS and REVISIONS.index(state.revision) > REVISIONS.index(target)):
                    return UpgradeResult(state.revision, state.revision, None)
                backup = None
                path = sqlite_path(url)
                if path is not None and state.revision is not None:
                    backup = backup_sqlite(path, state.revision)
                command.upgrade(alembic_config(conn), target)
                return UpgradeResult(state.revision, target, backup)
    finally:
        if mig is not engine:
            mig.dispose()


def _ensure_wal(conn: Any) -> None:
    """Switch a registry file to write-ahead logging (persistent; readers then never block the writer).
    Runs outside any transaction, as SQLite requires."""
    raw = conn.connection.dbapi_connection
    if str(raw.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        raw.execute("PRAGMA journal_mode = WAL")


# Opening a fresh registry races with the other processes creating it (the switch to WAL needs the file
# to itself): a lock conflict there is retried, with backoff, for about this many seconds in all.
SCHEMA_RETRY_S = 30.0


def with_retries(fn: Callable[[], T], patience_s: float, transient: Callable[[BaseException], bool]) -> T:
    """fn(), retried with jittered exponential backoff (up to 1 s apart) while the error it raises is a
    transient lock conflict and `patience_s` seconds have not passed; any other error at once."""
    deadline = time.monotonic() + patience_s
    delay = 0.01
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


def ensure_schema(engine: Any, url: str, *, explicit: bool = False, target: str = HEAD) -> UpgradeResult:
    """Bring the database to `target` according to the policy above; cheap when it is already there.
    Creation and upgrade are idempotent (the state is re-read under the lock), so a lock conflict is
    retried until SCHEMA_RETRY_S has passed."""
    return with_retries(lambda: _ensure_schema_once(engine, url, explicit=explicit, target=target), SCHEMA_RETRY_S,
                        lambda exc: isinstance(exc, RegistryError) and exc.__cause__ is not None
                        and is_transient(exc.__cause__))


def _ensure_schema_once(engine: Any, url: str, *, explicit: bool, target: str) -> UpgradeResult:
    try:
        with engine.connect() as conn:
            with conn.begin():
                state = read_state(conn)
            if state.revision != target:
                _check(state, url, explicit=explicit)
            if sqlite_path(url) is not None:
                _ensure_wal(conn)
        if state.revision == target:
            return UpgradeResult(target, target, None)
        return _locked_upgrade(engine, url, target, explicit)
    except DBAPIError as exc:
        raise registry_error(exc, url) from exc
    except sqlite3.Error as exc:
        raise registry_error(exc, url) from exc


def upgrade(url: str | None = None, *, target: str = HEAD) -> UpgradeResult:
    """`fqvae db upgrade`: create or upgrade the registry at `url` to `target`, on any engine."""
    url = paths.registry_url(url)
    if target not in REVISIONS:
        raise RegistryError(f"unknown schema revision '{target}'; known: {', '.join(REVISIONS)}.")
    engine = make_engine(url)
    try:
        return ensure_schema(engine, url, explicit=True, target=target)
    finally:
        engine.dispose()


def current_revision(url: str | None = None) -> str | None:
    """The revision stamped in the registry, without creating or changing anything (None: none yet).
    A database that holds someone else's tables is refused, as opening it would be."""
    url = paths.registry_url(url)
    path = sqlite_path(url)
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        return None
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            with conn.begin():
                state = read_state(conn)
        check_not_foreign(state, url)
        return state.revision
    except (DBAPIError, sqlite3.Error) as exc:
        raise registry_error(exc, url) from exc
    finally:
        engine.dispose()
