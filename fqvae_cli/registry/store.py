"""The results registry store: creating, finding, importing and deleting runs. Status changes and claims
are in transitions.py (the rules in lifecycle.py), metric rows and artifacts in results.py, the
connection plumbing in base.py, the records handed out in records.py. Only the registry package writes
SQL. One Registry per process (its engine holds a connection pool); after fork() the child reconnects."""

from __future__ import annotations

import difflib
import re
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from fqvae_cli import __version__, paths
from fqvae_cli.errors import NotFoundError, RegistryError, UsageError
from fqvae_cli.inputs import check_seed, run_name
from fqvae_cli.provenance import code_revision
from fqvae_cli.registry import lifecycle
from fqvae_cli.registry.base import ARTIFACTS, METRICS, RUNS, STARTS, json_text
from fqvae_cli.registry.lifecycle import ENDED, QUEUED, RUNNING, check_status
from fqvae_cli.registry.records import (
    ArtifactRecord,
    ArtifactRow,
    DamagedRow,
    MetricRecord,
    MetricRow,
    RunRecord,
    StartRecord,
    StartRow,
    opt_int,
    opt_text,
    provenance_key,
)
from fqvae_cli.registry.transitions import DEFAULT_STALE_S, Transitions, slices

__all__ = ["DEFAULT_STALE_S", "ArtifactRecord", "ArtifactRow", "MetricRecord", "MetricRow", "Registry", "RunRecord",
           "StartRecord", "StartRow", "code_revision", "run_dir"]

RUN_ID = re.compile(r"[0-9a-f]{32}")


def run_dir(run: RunRecord) -> Path:
    """Where a run's checkpoints, figures and matrices live: always a direct child of the workspace's
    runs folder, whatever id a (possibly shared, possibly tampered) registry row holds."""
    if not isinstance(run.id, str) or not RUN_ID.fullmatch(run.id):
        raise RegistryError(f"the registry holds a run id {run.id!r} that is not 32 hex digits; "
                            "refusing to use it as a folder name.")
    return paths.runs_root() / run.id


def _refuse_id_like_name(conn: Any, name: str) -> None:
    """get_run matches an exact id or short id before a name, and a name before an id prefix: a name that
    is an existing run's id, or the start of one, would make one of the two unreachable."""
    if not re.fullmatch(r"[0-9a-f]{2,32}", name):
        return
    clash = conn.execute(select(RUNS.c.short_id).where(RUNS.c.id.startswith(name)).limit(1)).scalar()
    if clash is not None:
        raise UsageError(f"the run name '{name}' is the id of run {clash} or the start of it, so one of the two "
                         "could not be referred to; choose another name.")


def _new_run_row(*, model: str, dataset: str, profile: str, seed: int, config: dict, name: str | None = None,
                 status: str = RUNNING, worker: str | None = None,
                 dataset_fingerprint: dict | None = None) -> dict[str, Any]:
    """The checked columns of a new run (create_runs) but its status columns (lifecycle.columns)."""
    lifecycle.require("new", None, status)
    for what, value, limit in (("model", model, 64), ("dataset", dataset, 64), ("profile", profile, 32)):
        if opt_text(value, what, limit) is None:
            raise UsageError(f"{what} is required.")
    return {"model": model, "dataset": dataset, "profile": profile, "seed": check_seed(seed, "seed"),
            "status": status, "config": json_text(config, "run config"), "name": run_name(name),
            "worker": opt_text(worker, "worker", 255),
            "dataset_fingerprint": None if dataset_fingerprint is None else json_text(dataset_fingerprint,
                                                                                      "dataset fingerprint")}


class Registry(Transitions):
    """The results registry at `url` (default: paths.registry_url()), created at head on first use:
    runs here, their status changes and claims in Transitions, metrics and artifacts in Results,
    plumbing in base.Connection."""

    # -- runs ---------------------------------------------------------------------------------------

    def create_run(self, *, model: str, dataset: str, profile: str, seed: int, config: dict,
                   name: str | None = None, status: str = RUNNING, worker: str | None = None,
                   dataset_fingerprint: dict | None = None) -> RunRecord:
        """Record a new run (status running: this process, named by `worker` as host:pid, trains it now;
        queued: a sweep worker will). The name goes through inputs.run_name (stripped; no control
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
            host = socket.gethostname()
            for status in (RUNNING, QUEUED):
                params = [{**row, "id": run_id, "short_id": run_id[:8]}
                          for run_id, row in zip(ids, rows, strict=True) if row["status"] == status]
                if not params:
                    continue
                # The status columns as a move to `status` writes them: only a running run has a holder
                # and a start; one time per row, increasing (a shared one would tie the batch in the queue).
                params = [{**p, **lifecycle.columns(status, now, worker=p["worker"], host=host),
                           **({"created_at": now} if self._sqlite else {})}
                          for p in params for now in [self._now() if self._sqlite else None]]
                stmt = insert(RUNS).values(version=__version__, code_revision=revision)
                if not self._sqlite:  # now() is the transaction's start; clock_timestamp() is read per row
                    stmt = stmt.values(created_at=func.clock_timestamp())
                conn.execute(stmt, params)
                if not self._sqlite and status == RUNNING:  # a running run starts when it is created (above: None)
                    for part in slices([p["id"] for p in params]):
                        conn.execute(update(RUNS).where(RUNS.c.id.in_(part)).values(
                            started_at=RUNS.c.created_at, heartbeat_at=RUNS.c.created_at))
            found: dict[str, RunRecord] = {}
            for part in slices(ids):
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
            for part in slices(shorts):
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
            stmt = stmt.where(RUNS.c.status.in_([check_status(s) for s in wanted]))
        stmt = stmt.order_by(RUNS.c.created_at, RUNS.c.id)
        return self._tx(lambda conn: self._readable(conn.execute(stmt)), write=False)

    def _readable(self, rows: Any) -> list[RunRecord]:
        """The records of `rows`, leaving out damaged rows with one warning each (per registry handle)."""
        from fqvae_cli.console import console

        out, said = [], self.__dict__.setdefault("_damaged_said", set())
        for row in rows:
            try:
                out.append(RunRecord.from_row(row))
            except DamagedRow as exc:
                if exc.run_id not in said:
                    said.add(exc.run_id)
                    console().print(f"warning: left out {exc}", soft_wrap=True, markup=False)
        return out

    def runs_matching(self, *, ids: Sequence[str] = (), short_ids: Sequence[str] = (),
                      names: Sequence[str] = ()) -> list[RunRecord]:
        """Runs whose id, short id or name is exactly one of those given (no prefixes, no fuzzy match)."""
        clauses = [col.in_(list(values)) for col, values in
                   ((RUNS.c.id, ids), (RUNS.c.short_id, short_ids), (RUNS.c.name, names)) if values]
        if not clauses:
            return []
        stmt = select(RUNS).where(or_(*clauses)).order_by(RUNS.c.created_at, RUNS.c.id)
        return self._tx(lambda conn: self._readable(conn.execute(stmt)), write=False)

    def import_runs(self, runs: Sequence[tuple]) -> None:
        """Record runs made elsewhere (a bundle), each given as (run, metric rows, artifact rows[, start
        rows]), in one transaction: all are stored or none. A run keeps its id, short id and times, its
        metric rows their order and provenance, its starts theirs; only stopped runs are taken, and an id
        or short id already in this registry is refused."""
        rows = []
        for run, metrics, artifacts, *more in runs:
            starts: Sequence[StartRow] = more[0] if more else ()
            rows.append((self._imported_run(run), [(m.params(run.id), m.provenance) for m in metrics],
                         [{**a.params(run.id), "created_at": self._stamp(a.created_at) or self._now()}
                          for a in artifacts], list(starts)))

        def fn(conn: Any) -> None:
            for values, metric_rows, artifact_params, starts in rows:
                clash = conn.execute(select(RUNS.c.short_id).where(or_(
                    RUNS.c.id == values["id"], RUNS.c.short_id == values["short_id"]))).first()
                if clash is not None:
                    raise UsageError(f"this registry already holds a run with the id or short id of run "
                                     f"{values['short_id']} (run {clash.short_id}); nothing was imported.")
                conn.execute(insert(RUNS).values(**values))
                ids = self._provenance_ids(conn, [d for _, d in metric_rows])
                if metric_rows:
                    conn.execute(insert(METRICS), [
                        {**params, "provenance_id": None if d is None else ids[provenance_key(d)[1]]}
                        for params, d in metric_rows])
                if starts:
                    self._record_starts(conn, values["id"], starts)
                if artifact_params:
                    conn.execute(insert(ARTIFACTS), artifact_params)

        self._tx(fn, write=True)

    def _imported_run(self, run: RunRecord) -> dict[str, Any]:
        """The runs-table columns of a run recorded elsewhere, checked as create_run checks a new one."""
        if not isinstance(run.id, str) or not RUN_ID.fullmatch(run.id):
            raise UsageError(f"a run id is 32 hex digits, not {run.id!r}.")
        if not isinstance(run.short_id, str) or not re.fullmatch(r"[0-9a-f]{8}", run.short_id):
            raise UsageError(f"a short run id is 8 hex digits, not {run.short_id!r}.")
        if run.status not in ENDED:
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

    def delete_run(self, run_id: str) -> RunRecord | None:
        """Delete a run's rows (metrics, artifacts, starts, run) in one transaction; files are the caller's.
        Provenance records stay: other rows may share them. Returns the run (None for a damaged row)."""
        def fn(conn: Any) -> RunRecord | None:
            try:
                run = self._get(conn, run_id)
            except DamagedRow:
                run = None
            conn.execute(delete(METRICS).where(METRICS.c.run_id == run_id))
            conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.run_id == run_id))
            conn.execute(delete(STARTS).where(STARTS.c.run_id == run_id))
            conn.execute(delete(RUNS).where(RUNS.c.id == run_id))
            return run

        return self._tx(fn, write=True)
