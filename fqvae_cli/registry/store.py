"""The results registry store: runs, their status and their one writer; metric rows and artifacts are in
results.py, the connection plumbing in base.py, the records handed out in records.py.

A run has one writer at a time: a sweep worker takes a queued run with claim_next_queued, and
`fqvae train --resume` takes one with claim_for_resume; both leave alone a run whose holder is alive
(liveness.py). One Registry per process (its engine holds a connection pool); after fork() the child
reconnects."""

from __future__ import annotations

import difflib
import re
import socket
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from fqvae_cli import __version__, paths
from fqvae_cli.errors import NotFoundError, RegistryError, UsageError
from fqvae_cli.inputs import check_seed, run_name
from fqvae_cli.registry import liveness
from fqvae_cli.registry.base import ARTIFACTS, METRICS, RUNS, json_text
from fqvae_cli.registry.records import (
    ArtifactRecord,
    ArtifactRow,
    MetricRecord,
    MetricRow,
    RunRecord,
    opt_int,
    opt_text,
)
from fqvae_cli.registry.results import Results
from fqvae_cli.registry.revision import code_revision
from fqvae_cli.registry.schema import STATUSES, TERMINAL_STATUSES

__all__ = ["ArtifactRecord", "ArtifactRow", "MetricRecord", "MetricRow", "Registry", "RunRecord", "code_revision",
           "run_dir"]

# A running run whose heartbeat is older than this is taken to be abandoned (sweep workers' default).
DEFAULT_STALE_S = 300.0
RUN_ID = re.compile(r"[0-9a-f]{32}")
# Values bound in one IN (...) list (SQLite allows 32,766 bound values per statement).
IN_SLICE = 500


def run_dir(run: RunRecord) -> Path:
    """Where a run's checkpoints, figures and matrices live: always a direct child of the workspace's
    runs folder, whatever id a (possibly shared, possibly tampered) registry row holds."""
    if not isinstance(run.id, str) or not RUN_ID.fullmatch(run.id):
        raise RegistryError(f"the registry holds a run id {run.id!r} that is not 32 hex digits; "
                            "refusing to use it as a folder name.")
    return paths.runs_root() / run.id


def _slices(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[i:i + IN_SLICE] for i in range(0, len(values), IN_SLICE)]


def _refuse_id_like_name(conn: Any, name: str) -> None:
    """get_run matches an exact id or short id before a name, and a name before an id prefix: a name that
    is an existing run's id, or the start of one, would make one of the two unreachable."""
    if not re.fullmatch(r"[0-9a-f]{2,32}", name):
        return
    clash = conn.execute(select(RUNS.c.short_id).where(RUNS.c.id.startswith(name)).limit(1)).scalar()
    if clash is not None:
        raise UsageError(f"the run name '{name}' is the id of run {clash} or the start of it, so one of the two "
                         "could not be referred to; choose another name.")


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise UsageError(f"unknown run status '{status}'; choose one of: {', '.join(STATUSES)}.")
    return status


def _new_run_row(*, model: str, dataset: str, profile: str, seed: int, config: dict, name: str | None = None,
                 status: str = "running", worker: str | None = None,
                 dataset_fingerprint: dict | None = None) -> dict[str, Any]:
    """The checked columns of a new run (create_runs); only a running run has a holder (worker)."""
    if status not in ("running", "queued"):
        raise UsageError(f"a new run starts as 'running' or 'queued', not '{status}'.")
    for what, value, limit in (("model", model, 64), ("dataset", dataset, 64), ("profile", profile, 32)):
        if opt_text(value, what, limit) is None:
            raise UsageError(f"{what} is required.")
    return {"model": model, "dataset": dataset, "profile": profile, "seed": check_seed(seed, "seed"),
            "status": status, "config": json_text(config, "run config"), "name": run_name(name),
            "worker": opt_text(worker, "worker", 255) if status == "running" else None,
            "dataset_fingerprint": None if dataset_fingerprint is None else json_text(dataset_fingerprint,
                                                                                      "dataset fingerprint")}


class Registry(Results):
    """The results registry at `url` (default: paths.registry_url()), created at head on first use;
    runs and their one writer here, metrics and artifacts in Results, plumbing in base.Connection."""

    # -- runs ---------------------------------------------------------------------------------------

    def create_run(self, *, model: str, dataset: str, profile: str, seed: int, config: dict,
                   name: str | None = None, status: str = "running", worker: str | None = None,
                   dataset_fingerprint: dict | None = None) -> RunRecord:
        """Record a new run ("running": this process, named by `worker` as host:pid, trains it now;
        "queued": a sweep worker will). The name goes through inputs.run_name (stripped; no control
        characters; never one that reads as a run id)."""
        (run,) = self.create_runs([{
            "model": model, "dataset": dataset, "profile": profile, "seed": seed, "config": config, "name": name,
            "status": status, "worker": worker, "dataset_fingerprint": dataset_fingerprint}])
        return run

    def create_runs(self, runs: Sequence[dict[str, Any]]) -> list[RunRecord]:
        """Record several new runs, each given as create_run's arguments, in one transaction (a sweep
        queues a large grid in batches this way); every one is checked before any is written. Rows of
        one status are inserted in one executemany, in the order given."""
        rows = [_new_run_row(**r) for r in runs]
        revision = code_revision()

        names = [row["name"] for row in rows if row["name"] is not None]

        def fn(conn: Any) -> list[RunRecord]:
            for name in names:
                _refuse_id_like_name(conn, name)
            ids = self._free_run_ids(conn, len(rows), avoid=set(names))
            for status in ("running", "queued"):
                params = [{**row, "id": run_id, "short_id": run_id[:8]}
                          for run_id, row in zip(ids, rows, strict=True) if row["status"] == status]
                if not params:
                    continue
                times = ("created_at", "started_at", "heartbeat_at") if status == "running" else ("created_at",)
                stmt = insert(RUNS).values(version=__version__, code_revision=revision,
                                           host=socket.gethostname() if status == "running" else None)
                if self._sqlite:  # one time per row, increasing: a shared one would tie the batch in the queue
                    params = [{**p, **dict.fromkeys(times, self._now())} for p in params]
                else:  # now() is the transaction's start; clock_timestamp() is read per row
                    stmt = stmt.values(**dict.fromkeys(times, func.clock_timestamp()))
                conn.execute(stmt, params)
            found: dict[str, RunRecord] = {}
            for part in _slices(ids):
                rows_back = conn.execute(select(RUNS).where(RUNS.c.id.in_(part)))
                found.update((r.id, RunRecord.from_row(r)) for r in rows_back)
            return [found[run_id] for run_id in ids]

        return self._tx(fn, write=True)

    @staticmethod
    def _free_run_ids(conn: Any, n: int, avoid: set[str]) -> list[str]:
        """`n` new run ids whose short forms (their first 8 digits) are distinct and are no other run's
        short id or name (nor one of `avoid`, the names of runs being created with them)."""
        ids: list[str] = []
        for _ in range(20):
            fresh = [uuid.uuid4().hex for _ in range(n - len(ids))]
            shorts = [f[:8] for f in fresh]
            taken = set(avoid)
            for part in _slices(shorts):
                taken.update(v for row in conn.execute(select(RUNS.c.short_id, RUNS.c.name).where(
                    or_(RUNS.c.short_id.in_(part), RUNS.c.name.in_(part)))) for v in row)
            seen = {i[:8] for i in ids}
            for f in fresh:
                if f[:8] not in taken and f[:8] not in seen:
                    ids.append(f)
                    seen.add(f[:8])
            if len(ids) == n:
                return ids
        raise RegistryError("could not find free short run ids.")  # pragma: no cover - needs ~10^9 runs

    def start(self, run_id: str, *, host: str | None = None, device: str | None = None) -> None:
        """Mark a run as running here (host defaults to this machine's name)."""
        now = self._now()
        self._update(run_id, {"status": "running", "started_at": now, "heartbeat_at": now,
                              "finished_at": None, "error": None,
                              "host": opt_text(host, "host", 255) or socket.gethostname(),
                              "device": opt_text(device, "device", 64)})

    def heartbeat(self, run_id: str) -> bool:
        """Refresh a running run's heartbeat. False when the run is no longer running (finished, or
        requeued as stale), which tells its worker to stop."""
        return self._update(run_id, {"heartbeat_at": self._now()}, where=RUNS.c.status == "running") > 0

    def _end(self, run_id: str, status: str, error: str | None) -> None:
        now = self._now()
        self._update(run_id, {"status": status, "finished_at": now, "heartbeat_at": now, "error": error})

    def finish(self, run_id: str) -> None:
        self._end(run_id, "finished", None)

    def fail(self, run_id: str, error: str) -> None:
        self._end(run_id, "failed", str(error)[:20_000])

    def interrupt(self, run_id: str, reason: str | None = None) -> None:
        self._end(run_id, "interrupted", None if reason is None else str(reason)[:20_000])

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
        self._update(run_id, {"config": json_text(config, "run config")})

    def set_dataset_fingerprint(self, run_id: str, fingerprint: dict) -> None:
        """Record the prepared dataset a run is trained on (a queued run learns it when it starts)."""
        self._update(run_id, {"dataset_fingerprint": json_text(fingerprint, "dataset fingerprint")})

    def get_run(self, ref: str) -> RunRecord:
        """A run by full id, short id, name, or unique id prefix (2+ characters)."""
        ref = str(ref).strip()

        def fn(conn: Any) -> RunRecord:
            rows = conn.execute(select(RUNS).where(
                or_(RUNS.c.id == ref, RUNS.c.short_id == ref, RUNS.c.name == ref))).all()
            by_id = [r for r in rows if ref in (r.id, r.short_id)]
            if by_id or len(rows) == 1:
                return RunRecord.from_row((by_id or rows)[0])
            if len(rows) > 1:
                raise UsageError(f"the name '{ref}' matches {len(rows)} runs "
                                 f"({', '.join(sorted(r.short_id for r in rows))}); use an id.")
            if re.fullmatch(r"[0-9a-f]{2,32}", ref):
                rows = conn.execute(select(RUNS).where(RUNS.c.id.startswith(ref)).limit(6)).all()
                if len(rows) == 1:
                    return RunRecord.from_row(rows[0])
                if rows:
                    raise UsageError(f"'{ref}' is the start of several run ids "
                                     f"({', '.join(sorted(r.short_id for r in rows))}); type more of it.")
            known = conn.execute(select(RUNS.c.short_id, RUNS.c.name)).all()
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
        stmt = select(RUNS)
        for col, value in (("model", model), ("dataset", dataset), ("profile", profile), ("seed", seed),
                           ("name", name)):
            if value is not None:
                stmt = stmt.where(RUNS.c[col] == value)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(RUNS.c.status.in_([_check_status(s) for s in wanted]))
        stmt = stmt.order_by(RUNS.c.created_at, RUNS.c.id)
        return self._tx(lambda conn: [RunRecord.from_row(r) for r in conn.execute(stmt)], write=False)

    def runs_matching(self, *, ids: Sequence[str] = (), short_ids: Sequence[str] = (),
                      names: Sequence[str] = ()) -> list[RunRecord]:
        """Runs whose id, short id or name is exactly one of those given (no prefixes, no fuzzy match)."""
        clauses = [col.in_(list(values)) for col, values in
                   ((RUNS.c.id, ids), (RUNS.c.short_id, short_ids), (RUNS.c.name, names)) if values]
        if not clauses:
            return []
        stmt = select(RUNS).where(or_(*clauses)).order_by(RUNS.c.created_at, RUNS.c.id)
        return self._tx(lambda conn: [RunRecord.from_row(r) for r in conn.execute(stmt)], write=False)

    def import_runs(self, runs: Sequence[tuple[RunRecord, Sequence[MetricRow], Sequence[ArtifactRow]]]) -> None:
        """Record runs made elsewhere (a bundle), each with its metric rows (in order) and artifacts, in one
        transaction: all are stored or none. A run keeps its id, short id and times; only stopped runs are
        taken, and an id or short id already in this registry is refused."""
        rows = [(self._imported_run(run), [m.params(run.id) for m in metrics],
                 [{**a.params(run.id), "created_at": self._stamp(a.created_at) or self._now()} for a in artifacts])
                for run, metrics, artifacts in runs]

        def fn(conn: Any) -> None:
            for values, metric_params, artifact_params in rows:
                clash = conn.execute(select(RUNS.c.short_id).where(or_(
                    RUNS.c.id == values["id"], RUNS.c.short_id == values["short_id"]))).first()
                if clash is not None:
                    raise UsageError(f"this registry already holds a run with the id or short id of run "
                                     f"{values['short_id']} (run {clash.short_id}); nothing was imported.")
                conn.execute(insert(RUNS).values(**values))
                if metric_params:
                    conn.execute(insert(METRICS), metric_params)
                if artifact_params:
                    conn.execute(insert(ARTIFACTS), artifact_params)

        self._tx(fn, write=True)

    def _imported_run(self, run: RunRecord) -> dict[str, Any]:
        """The runs-table columns of a run recorded elsewhere, checked as create_run checks a new one."""
        if not isinstance(run.id, str) or not RUN_ID.fullmatch(run.id):
            raise UsageError(f"a run id is 32 hex digits, not {run.id!r}.")
        if not isinstance(run.short_id, str) or not re.fullmatch(r"[0-9a-f]{8}", run.short_id):
            raise UsageError(f"a short run id is 8 hex digits, not {run.short_id!r}.")
        if run.status not in TERMINAL_STATUSES:
            raise UsageError(f"only a stopped run can be imported; run {run.short_id} is '{run.status}'.")
        for what, value, limit in (("model", run.model, 64), ("dataset", run.dataset, 64),
                                   ("profile", run.profile, 32)):
            if opt_text(value, what, limit) is None:
                raise UsageError(f"{what} is required.")
        seed = opt_int(run.seed, "seed")
        if seed is None or seed < 0:
            raise UsageError(f"seed must be a non-negative integer, not {run.seed!r}.")
        if run.created_at is None:
            raise UsageError(f"run {run.short_id} has no creation time.")
        text = {col: opt_text(getattr(run, col), col, limit) for col, limit in (
            ("name", 200), ("host", 255), ("device", 64), ("version", 32), ("code_revision", 64),
            ("worker", 255))}
        if run.error is not None and not isinstance(run.error, str):
            raise UsageError(f"a run's error must be text, not {run.error!r}.")
        fp = run.dataset_fingerprint
        return {**text, "id": run.id, "short_id": run.short_id, "model": run.model, "dataset": run.dataset,
                "profile": run.profile, "seed": seed, "status": run.status, "error": run.error,
                "config": json_text(run.config, "run config"),
                "dataset_fingerprint": None if fp is None else json_text(fp, "dataset fingerprint"),
                **{col: self._stamp(getattr(run, col))
                   for col in ("created_at", "started_at", "finished_at", "heartbeat_at")}}

    def delete_run(self, run_id: str) -> RunRecord:
        """Delete a run's rows (metrics, artifacts, run) in one transaction; files are the caller's."""
        def fn(conn: Any) -> RunRecord:
            run = self._get(conn, run_id)
            conn.execute(delete(METRICS).where(METRICS.c.run_id == run_id))
            conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.run_id == run_id))
            conn.execute(delete(RUNS).where(RUNS.c.id == run_id))
            return run

        return self._tx(fn, write=True)

    def holder_state(self, run: RunRecord, stale_after_s: float = DEFAULT_STALE_S) -> str:
        """'alive', 'dead' or 'stale' for a running run (liveness.holder_state by the server's clock)."""
        now = self._tx(self._clock, write=False)
        return liveness.run_state(run, now, stale_after_s)

    # -- one writer per run -------------------------------------------------------------------------

    def claim_next_queued(self, worker: str, *, only: Collection[str] | None = None) -> RunRecord | None:
        """Atomically take the oldest queued run for `worker`, or None when the queue is empty.
        `only`: take none but these runs (full or short ids), e.g. the runs of one table; any other queued
        run stays queued. PostgreSQL skips rows other workers hold (FOR UPDATE SKIP LOCKED); SQLite
        serialises claims through its write lock."""
        worker = opt_text(worker, "worker", 255)
        queued = select(RUNS.c.id, RUNS.c.created_at).where(RUNS.c.status == "queued")
        if only is None:
            choices = [queued]
        else:
            refs = sorted({str(r) for r in only})
            # In slices, so a long list stays within the engines' limits on bound parameters.
            choices = [queued.where(or_(RUNS.c.id.in_(part), RUNS.c.short_id.in_(part)))
                       for part in _slices(refs)]

        def fn(conn: Any) -> RunRecord | None:
            oldest = [conn.execute(stmt.order_by(RUNS.c.created_at, RUNS.c.id).limit(1)
                                   .with_for_update(skip_locked=True)).first() for stmt in choices]
            oldest = [row for row in oldest if row is not None]
            if not oldest:
                return None
            run_id = min(oldest, key=lambda row: (row.created_at, row.id)).id
            now = self._now()
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(
                status="running", worker=worker, started_at=now, heartbeat_at=now, finished_at=None,
                error=None))
            return self._get(conn, run_id)

        return self._tx(fn, write=True)

    def claim_for_resume(self, run_id: str, *, host: str | None = None, pid: int | None = None,
                         stale_after_s: float = DEFAULT_STALE_S) -> RunRecord:
        """Atomically make this process (host:pid) the one writer of an unfinished run, as a worker's
        claim does. Refuses a finished run, and a running one whose holder is alive (a live pid on this
        machine, or a heartbeat fresher than stale_after_s elsewhere), naming the holder."""
        host = opt_text(host, "host", 255) or socket.gethostname()
        holder = f"{host}:{liveness.holder_id().rpartition(':')[2] if pid is None else int(pid)}"

        def fn(conn: Any) -> RunRecord:
            run = self._get(conn, run_id, lock=True)
            self._require_resumable(conn, run, holder, stale_after_s)
            now = self._now()
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(
                status="running", worker=holder, host=host, started_at=now, heartbeat_at=now, finished_at=None,
                error=None))
            return self._get(conn, run_id)

        return self._tx(fn, write=True)

    def require_resumable(self, run: RunRecord, stale_after_s: float = DEFAULT_STALE_S) -> None:
        """What claim_for_resume would refuse (a finished run, a live holder), checked without claiming,
        so a command can say so before any other work."""
        self._tx(lambda conn: self._require_resumable(conn, run, liveness.holder_id(), stale_after_s), write=False)

    def _require_resumable(self, conn: Any, run: RunRecord, holder: str, stale_after_s: float) -> None:
        if run.status == "finished":
            raise UsageError(f"run {run.short_id} already finished; nothing to resume.")
        if run.status == "running" and run.worker != holder:
            now = self._clock(conn)
            if liveness.run_state(run, now, stale_after_s) == "alive":
                beat = run.heartbeat_at or run.started_at
                age = f"; last heartbeat {(now - beat).total_seconds():.0f} s ago" if beat else ""
                who = run.worker or run.host or "another process"
                raise UsageError(f"run {run.short_id} is being trained by {who}{age}; stop it first "
                                 "(one writer per run).")

    def requeue_stale(self, older_than_s: float) -> list[str]:
        """Put back in the queue every running run whose holder is gone: a pid on this machine that no
        longer exists, or a heartbeat older than `older_than_s` seconds by the database server's clock
        (a live local holder is never taken over). Returns their ids."""
        if not older_than_s >= 0:
            raise UsageError(f"the staleness limit must be a non-negative number of seconds, not {older_than_s}.")

        def fn(conn: Any) -> list[str]:
            now = self._clock(conn)
            rows = conn.execute(select(RUNS).where(RUNS.c.status == "running").with_for_update()).all()
            gone = sorted(r.id for r in map(RunRecord.from_row, rows)
                          if liveness.run_state(r, now, older_than_s) != "alive")
            if gone:
                conn.execute(update(RUNS).where(RUNS.c.id.in_(gone), RUNS.c.status == "running")
                             .values(status="queued", worker=None, started_at=None, heartbeat_at=None))
            return gone

        return self._tx(fn, write=True)

