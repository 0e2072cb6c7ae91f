"""The results registry store: the only code that reads and writes registry rows.

Callers get plain frozen dataclasses (RunRecord, MetricRecord, ArtifactRecord), never ORM objects, so
nothing outside this module holds a session or triggers lazy SQL. Every method is one transaction. On
SQLite, writes take the lock up front (BEGIN IMMEDIATE) and a transaction that still meets a lock is
retried with exponential backoff; on PostgreSQL, deadlocks and serialization failures are retried the
same way. Any other database failure becomes a RegistryError with one sentence.

Times come from the database server's clock on PostgreSQL (now()), so heartbeats written by many machines
compare fairly; a SQLite registry is one file on one machine, whose clock is used.

One Registry per process (its engine holds a connection pool); after fork() the child reconnects.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import operator
import os
import random
import re
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from fqvae_cli import __version__, paths
from fqvae_cli.errors import NotFoundError, RegistryError, UsageError
from fqvae_cli.registry import migrate
from fqvae_cli.registry.schema import STATUSES, TERMINAL_STATUSES, Artifact, Metric, Run

T = TypeVar("T")
# How long a write keeps retrying a locked SQLite database before giving up with a RegistryError.
LOCK_PATIENCE_S = 120.0
# value_text encodings; SQLite also folds -0.0 into 0, so the sign of zero is kept here too.
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0": -0.0}
_RUNS, _METRICS, _ARTIFACTS = Run.__table__, Metric.__table__, Artifact.__table__


@dataclass(frozen=True)
class RunRecord:
    id: str
    short_id: str
    name: str | None
    model: str
    dataset: str
    profile: str
    seed: int
    status: str
    config: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    host: str | None
    device: str | None
    version: str | None
    code_revision: str | None
    error: str | None
    worker: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 UTC strings)."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class MetricRecord:
    id: int
    run_id: str
    name: str
    value: float
    step: int | None
    split: str | None
    protocol: str | None

    @property
    def key(self) -> str:
        """`protocol:name@split`, leaving out the parts that are unset; the column name in exports."""
        key = f"{self.protocol}:{self.name}" if self.protocol else self.name
        return f"{key}@{self.split}" if self.split else key

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactRecord:
    id: int
    run_id: str
    kind: str
    path: str
    bytes: int
    sha256: str
    step: int | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


def run_dir(run: RunRecord) -> Path:
    """Where a run's checkpoints, figures and matrices live."""
    return paths.runs_root() / run.id


@functools.lru_cache(maxsize=1)
def code_revision() -> str | None:
    """The git commit of the running code (with -dirty for uncommitted changes), or $FQVAE_CODE_REVISION
    for installs without a checkout; None when neither is known."""
    env = os.environ.get("FQVAE_CODE_REVISION")
    if env:
        return env[:64]
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = head.stdout.strip()
    if head.returncode or not re.fullmatch(r"[0-9a-f]{40}", rev):
        return None
    return rev + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _encode_value(value: Any) -> tuple[float | None, str | None]:
    if isinstance(value, (bool, str, bytes)):
        raise UsageError(f"metric value {value!r} is not a number.")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metric value {value!r} is not a number.") from exc
    if math.isnan(v):
        return None, "nan"
    if math.isinf(v):
        return None, "inf" if v > 0 else "-inf"
    if v == 0.0 and math.copysign(1.0, v) < 0:
        return 0.0, "-0"
    return v, None


def _decode_value(value: float | None, text: str | None) -> float:
    if text is not None:
        return _SPECIAL[text]
    return math.nan if value is None else float(value)


def _opt_text(value: Any, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise UsageError(f"{what} must be a non-empty string of at most {limit} characters, not {value!r}.")
    return value


def _opt_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"{what} must be an integer, not {value!r}.")
    try:
        return operator.index(value)
    except TypeError as exc:
        raise UsageError(f"{what} must be an integer, not {value!r}.") from exc


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise UsageError(f"unknown run status '{status}'; choose one of: {', '.join(STATUSES)}.")
    return status


def _to_run(row: Any) -> RunRecord:
    m = row._mapping
    return RunRecord(
        id=m["id"], short_id=m["short_id"], name=m["name"], model=m["model"], dataset=m["dataset"],
        profile=m["profile"], seed=m["seed"], status=m["status"], config=json.loads(m["config"]),
        created_at=_utc(m["created_at"]), started_at=_utc(m["started_at"]),
        finished_at=_utc(m["finished_at"]), heartbeat_at=_utc(m["heartbeat_at"]), host=m["host"],
        device=m["device"], version=m["version"], code_revision=m["code_revision"], error=m["error"],
        worker=m["worker"])


def _to_metric(row: Any) -> MetricRecord:
    m = row._mapping
    return MetricRecord(id=m["id"], run_id=m["run_id"], name=m["name"],
                        value=_decode_value(m["value"], m["value_text"]), step=m["step"],
                        split=m["split"], protocol=m["protocol"])


def _to_artifact(row: Any) -> ArtifactRecord:
    m = row._mapping
    return ArtifactRecord(id=m["id"], run_id=m["run_id"], kind=m["kind"], path=m["path"], bytes=m["bytes"],
                          sha256=m["sha256"], step=m["step"], created_at=_utc(m["created_at"]))


class Registry:
    """The results registry at `url` (default: paths.registry_url()), created at head on first use."""

    def __init__(self, url: str | None = None):
        self.url = paths.registry_url(url)
        self.display_url = migrate.display_url(self.url)
        self._engine = migrate.make_engine(self.url)
        self._sqlite = migrate.is_sqlite(self.url)
        try:
            self.schema = migrate.ensure_schema(self._engine, self.url)
        except BaseException:
            self._engine.dispose()
            raise

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, fn: Callable[[Any], T], *, write: bool) -> T:
        """Run fn(connection) in one transaction, retrying lock conflicts with jittered backoff."""
        from sqlalchemy.exc import DBAPIError

        deadline = time.monotonic() + LOCK_PATIENCE_S
        delay = 0.01
        while True:
            try:
                with self._engine.connect() as conn:
                    if write:
                        conn = conn.execution_options(**{migrate.WRITE: True})
                    with conn.begin():
                        return fn(conn)
            except (DBAPIError, sqlite3.Error) as exc:
                if migrate.is_transient(exc) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                raise migrate.registry_error(exc, self.url) from exc

    def _now(self) -> Any:
        """The current time as the server sees it: now() on PostgreSQL, this machine's UTC for SQLite
        (stored naive, as SQLite has no time zones)."""
        if self._sqlite:
            return datetime.now(timezone.utc).replace(tzinfo=None)
        from sqlalchemy import func

        return func.now()

    def _get(self, conn: Any, run_id: str) -> RunRecord:
        from sqlalchemy import select

        row = conn.execute(select(_RUNS).where(_RUNS.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no run with id '{run_id}' in {self.display_url}.")
        return _to_run(row)

    def _update(self, run_id: str, values: dict[str, Any], where: Any = None) -> int:
        from sqlalchemy import update

        def fn(conn: Any) -> int:
            stmt = update(_RUNS).where(_RUNS.c.id == run_id)
            if where is not None:
                stmt = stmt.where(where)
            n = conn.execute(stmt.values(**values)).rowcount
            if n == 0:
                self._get(conn, run_id)  # raises NotFoundError for an unknown id
            return n

        return self._tx(fn, write=True)

    # -- runs ---------------------------------------------------------------------------------------

    def create_run(self, *, model: str, dataset: str, profile: str, seed: int, config: dict,
                   name: str | None = None, status: str = "running") -> RunRecord:
        """Record a new run ("running": this process trains it now; "queued": a sweep worker will)."""
        from sqlalchemy import insert, select

        if status not in ("running", "queued"):
            raise UsageError(f"a new run starts as 'running' or 'queued', not '{status}'.")
        for what, value, limit in (("model", model, 64), ("dataset", dataset, 64), ("profile", profile, 32)):
            _opt_text(value, what, limit)
            if value is None:
                raise UsageError(f"{what} is required.")
        seed = _opt_int(seed, "seed")
        if seed is None:
            raise UsageError("seed is required.")
        try:
            config_text = json.dumps(config, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the run config cannot be stored as JSON ({exc}).") from exc
        name = _opt_text(name, "name", 200)
        revision = code_revision()

        def fn(conn: Any) -> RunRecord:
            for _ in range(20):
                run_id = uuid.uuid4().hex
                taken = conn.execute(select(_RUNS.c.id).where(_RUNS.c.short_id == run_id[:8])).first()
                if taken is None:
                    break
            else:  # pragma: no cover - needs ~10^9 runs
                raise RegistryError("could not find a free short run id.")
            now = self._now()
            running = status == "running"
            conn.execute(insert(_RUNS).values(
                id=run_id, short_id=run_id[:8], name=name, model=model, dataset=dataset, profile=profile,
                seed=seed, status=status, config=config_text, created_at=now,
                started_at=now if running else None, heartbeat_at=now if running else None,
                host=socket.gethostname() if running else None, version=__version__,
                code_revision=revision))
            return self._get(conn, run_id)

        return self._tx(fn, write=True)

    def start(self, run_id: str, *, host: str | None = None, device: str | None = None) -> None:
        """Mark a run as running here (host defaults to this machine's name)."""
        now = self._now()
        self._update(run_id, {"status": "running", "started_at": now, "heartbeat_at": now,
                              "finished_at": None, "error": None,
                              "host": _opt_text(host, "host", 255) or socket.gethostname(),
                              "device": _opt_text(device, "device", 64)})

    def heartbeat(self, run_id: str) -> bool:
        """Refresh a running run's heartbeat. False when the run is no longer running (finished, or
        requeued as stale), which tells its worker to stop."""
        return self._update(run_id, {"heartbeat_at": self._now()}, where=_RUNS.c.status == "running") > 0

    def _end(self, run_id: str, status: str, error: str | None) -> None:
        now = self._now()
        self._update(run_id, {"status": status, "finished_at": now, "heartbeat_at": now, "error": error})

    def finish(self, run_id: str) -> None:
        self._end(run_id, "finished", None)

    def fail(self, run_id: str, error: str) -> None:
        self._end(run_id, "failed", str(error)[:20_000])

    def interrupt(self, run_id: str) -> None:
        self._end(run_id, "interrupted", None)

    def set_status(self, run_id: str, status: str) -> None:
        """Set any status; terminal ones stamp finished_at, "queued" clears the claim so a worker retakes it."""
        _check_status(status)
        now = self._now()
        values: dict[str, Any] = {"status": status}
        if status in TERMINAL_STATUSES:
            values["finished_at"] = now
        elif status == "queued":
            values.update(worker=None, started_at=None, heartbeat_at=None, finished_at=None, error=None)
        else:
            values.update(heartbeat_at=now, finished_at=None)
        self._update(run_id, values)

    def update_config(self, run_id: str, config: dict) -> None:
        try:
            text = json.dumps(config, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the run config cannot be stored as JSON ({exc}).") from exc
        self._update(run_id, {"config": text})

    def get_run(self, ref: str) -> RunRecord:
        """A run by full id, short id, name, or unique id prefix (4+ characters)."""
        from sqlalchemy import or_, select

        ref = str(ref).strip()

        def fn(conn: Any) -> RunRecord:
            rows = conn.execute(select(_RUNS).where(
                or_(_RUNS.c.id == ref, _RUNS.c.short_id == ref, _RUNS.c.name == ref))).all()
            by_id = [r for r in rows if ref in (r.id, r.short_id)]
            if by_id:
                return _to_run(by_id[0])
            if len(rows) == 1:
                return _to_run(rows[0])
            if len(rows) > 1:
                raise UsageError(f"the name '{ref}' matches {len(rows)} runs "
                                 f"({', '.join(sorted(r.short_id for r in rows))}); use an id.")
            if re.fullmatch(r"[0-9a-f]{4,32}", ref):
                rows = conn.execute(select(_RUNS).where(_RUNS.c.id.startswith(ref)).limit(6)).all()
                if len(rows) == 1:
                    return _to_run(rows[0])
                if rows:
                    raise UsageError(f"'{ref}' is the start of several run ids "
                                     f"({', '.join(sorted(r.short_id for r in rows))}); type more of it.")
            known = conn.execute(select(_RUNS.c.short_id, _RUNS.c.name)).all()
            candidates = [r.short_id for r in known] + [r.name for r in known if r.name]
            close = difflib.get_close_matches(ref, candidates, n=5, cutoff=0.3)
            hint = f"closest: {', '.join(close)}" if close else (
                "the registry has no runs" if not known else "no similar ids or names")
            raise NotFoundError(f"no run '{ref}' in {self.display_url} ({hint}).")

        return self._tx(fn, write=False)

    def find_runs(self, *, model: str | None = None, dataset: str | None = None, profile: str | None = None,
                  status: str | Sequence[str] | None = None, seed: int | None = None,
                  name: str | None = None) -> list[RunRecord]:
        """Runs matching every given filter, oldest first."""
        from sqlalchemy import select

        stmt = select(_RUNS)
        for col, value in (("model", model), ("dataset", dataset), ("profile", profile), ("seed", seed),
                           ("name", name)):
            if value is not None:
                stmt = stmt.where(_RUNS.c[col] == value)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(_RUNS.c.status.in_([_check_status(s) for s in wanted]))
        stmt = stmt.order_by(_RUNS.c.created_at, _RUNS.c.id)
        return self._tx(lambda conn: [_to_run(r) for r in conn.execute(stmt)], write=False)

    def delete_run(self, run_id: str) -> RunRecord:
        """Delete a run's rows (metrics, artifacts, run) in one transaction; files are the caller's."""
        from sqlalchemy import delete

        def fn(conn: Any) -> RunRecord:
            run = self._get(conn, run_id)
            conn.execute(delete(_METRICS).where(_METRICS.c.run_id == run_id))
            conn.execute(delete(_ARTIFACTS).where(_ARTIFACTS.c.run_id == run_id))
            conn.execute(delete(_RUNS).where(_RUNS.c.id == run_id))
            return run

        return self._tx(fn, write=True)

    # -- sweep queue --------------------------------------------------------------------------------

    def claim_next_queued(self, worker: str) -> RunRecord | None:
        """Atomically take the oldest queued run for `worker`, or None when the queue is empty.
        PostgreSQL skips rows other workers hold (FOR UPDATE SKIP LOCKED); SQLite serialises claims
        through its write lock."""
        from sqlalchemy import select, update

        worker = _opt_text(worker, "worker", 255)

        def fn(conn: Any) -> RunRecord | None:
            run_id = conn.execute(
                select(_RUNS.c.id).where(_RUNS.c.status == "queued")
                .order_by(_RUNS.c.created_at, _RUNS.c.id).limit(1).with_for_update(skip_locked=True)
            ).scalar()
            if run_id is None:
                return None
            now = self._now()
            conn.execute(update(_RUNS).where(_RUNS.c.id == run_id).values(
                status="running", worker=worker, started_at=now, heartbeat_at=now, finished_at=None,
                error=None))
            return self._get(conn, run_id)

        return self._tx(fn, write=True)

    def requeue_stale(self, older_than_s: float) -> list[str]:
        """Put back in the queue every running run whose heartbeat is older than `older_than_s` seconds by
        the database server's clock; returns their ids."""
        from sqlalchemy import and_, or_, update

        cutoff = self._now() - timedelta(seconds=float(older_than_s))
        stale = and_(_RUNS.c.status == "running", or_(
            _RUNS.c.heartbeat_at < cutoff, and_(_RUNS.c.heartbeat_at.is_(None), _RUNS.c.started_at < cutoff)))
        stmt = (update(_RUNS).where(stale)
                .values(status="queued", worker=None, started_at=None, heartbeat_at=None)
                .returning(_RUNS.c.id))
        return self._tx(lambda conn: sorted(conn.execute(stmt).scalars()), write=True)

    # -- metrics ------------------------------------------------------------------------------------

    def log_metrics(self, run_id: str, rows: Sequence[tuple]) -> int:
        """Append metric rows (name, value, step, split, protocol; trailing items may be left out) in one
        transaction: all are stored or none. Returns the number stored."""
        from sqlalchemy import insert

        params = []
        for row in rows:
            if not 2 <= len(row) <= 5:
                raise UsageError(f"a metric row is (name, value, step, split, protocol), not {row!r}.")
            name, value, step, split, protocol = (*row, None, None, None)[:5]
            if _opt_text(name, "metric name", 128) is None:
                raise UsageError("a metric row needs a name.")
            number, text = _encode_value(value)
            params.append({"run_id": run_id, "name": name, "value": number, "value_text": text,
                           "step": _opt_int(step, "metric step"), "split": _opt_text(split, "split", 32),
                           "protocol": _opt_text(protocol, "protocol", 64)})
        if not params:
            return 0

        def fn(conn: Any) -> int:
            self._get(conn, run_id)
            conn.execute(insert(_METRICS), params)
            return len(params)

        return self._tx(fn, write=True)

    def metrics(self, run_id: str, *, protocol: str | None = None, name: str | None = None,
                split: str | None = None) -> list[MetricRecord]:
        """Every metric row of a run in logging order, optionally filtered."""
        from sqlalchemy import select

        stmt = select(_METRICS).where(_METRICS.c.run_id == run_id)
        for col, value in (("protocol", protocol), ("name", name), ("split", split)):
            if value is not None:
                stmt = stmt.where(_METRICS.c[col] == value)
        return self._tx(lambda conn: [_to_metric(r) for r in conn.execute(stmt.order_by(_METRICS.c.id))],
                        write=False)

    def latest_metric_records(self, run_ids: Sequence[str]) -> list[MetricRecord]:
        """For each run, the last logged row of every (protocol, split, name)."""
        from sqlalchemy import func, select

        ids = list(dict.fromkeys(run_ids))

        def fn(conn: Any) -> list[MetricRecord]:
            out: list[MetricRecord] = []
            for i in range(0, len(ids), 500):
                last = (select(func.max(_METRICS.c.id)).where(_METRICS.c.run_id.in_(ids[i:i + 500]))
                        .group_by(_METRICS.c.run_id, _METRICS.c.protocol, _METRICS.c.split, _METRICS.c.name))
                rows = conn.execute(select(_METRICS).where(_METRICS.c.id.in_(last)).order_by(_METRICS.c.id))
                out.extend(_to_metric(r) for r in rows)
            return out

        return self._tx(fn, write=False)

    def latest_metrics(self, run_id: str, protocol: str | None, *, split: str | None = None) -> dict[str, float]:
        """{name: value} of the last row of each metric name logged under `protocol` (None: rows logged
        without a protocol, e.g. training losses), optionally of one split."""
        latest = {}
        for m in self.latest_metric_records([run_id]):
            if m.protocol == protocol and (split is None or m.split == split):
                latest[m.name] = m  # ids ascend, so a later split row of the same name wins
        return {name: m.value for name, m in latest.items()}

    # -- artifacts ----------------------------------------------------------------------------------

    def add_artifact(self, run_id: str, *, kind: str, path: str | Path, bytes: int, sha256: str,
                     step: int | None = None) -> ArtifactRecord:
        from sqlalchemy import insert, select

        _opt_text(kind, "artifact kind", 32)
        if not re.fullmatch(r"[0-9a-f]{64}", str(sha256)):
            raise UsageError(f"sha256 must be 64 lowercase hex digits, not {sha256!r}.")
        size = _opt_int(bytes, "artifact size")
        if size is None or size < 0:
            raise UsageError(f"artifact size must be a non-negative integer, not {bytes!r}.")
        values = {"run_id": run_id, "kind": kind, "path": str(path), "bytes": size, "sha256": sha256,
                  "step": _opt_int(step, "artifact step")}

        def fn(conn: Any) -> ArtifactRecord:
            self._get(conn, run_id)
            new_id = conn.execute(insert(_ARTIFACTS).values(**values, created_at=self._now())
                                  .returning(_ARTIFACTS.c.id)).scalar_one()
            return _to_artifact(conn.execute(select(_ARTIFACTS).where(_ARTIFACTS.c.id == new_id)).one())

        return self._tx(fn, write=True)

    def remove_artifact(self, artifact_id: int) -> None:
        from sqlalchemy import delete

        def fn(conn: Any) -> None:
            if conn.execute(delete(_ARTIFACTS).where(_ARTIFACTS.c.id == artifact_id)).rowcount == 0:
                raise NotFoundError(f"no artifact with id {artifact_id} in {self.display_url}.")

        self._tx(fn, write=True)

    def artifacts(self, run_id: str, kind: str | None = None) -> list[ArtifactRecord]:
        from sqlalchemy import select

        stmt = select(_ARTIFACTS).where(_ARTIFACTS.c.run_id == run_id)
        if kind is not None:
            stmt = stmt.where(_ARTIFACTS.c.kind == kind)
        return self._tx(lambda conn: [_to_artifact(r) for r in conn.execute(stmt.order_by(_ARTIFACTS.c.id))],
                        write=False)
