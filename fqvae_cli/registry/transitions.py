"""Every change of a run's status, and who may write a run: the registry side of lifecycle.py.

`transition` is the one method that moves a run from one status to another; the claims (a worker taking the
oldest queued run, `fqvae train --resume` taking a stopped one) and the requeue of runs whose holder is gone
are transitions whose condition is checked on the locked row, in the transaction that moves it. Each checks
lifecycle.TRANSITIONS and writes lifecycle.columns; the database checks the same moves again (migration 0004).
A move to running that starts training records the start with its provenance, in the same transaction (every
start adds a row; a resume elsewhere never replaces where the run first trained).

A run has one writer at a time: both claims leave alone a run whose holder is alive (liveness.py)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import insert, or_, select, update

from fqvae_cli.errors import UsageError
from fqvae_cli.registry import lifecycle, liveness
from fqvae_cli.registry.base import RUNS, STARTS
from fqvae_cli.registry.lifecycle import FINISHED, QUEUED, RUNNING
from fqvae_cli.registry.records import RunRecord, StartRow, opt_text, provenance_key
from fqvae_cli.registry.results import Results

# A running run whose heartbeat is older than this is taken to be abandoned (sweep workers' default).
DEFAULT_STALE_S = 300.0
# Values bound in one IN (...) list (SQLite allows 32,766 bound values per statement).
IN_SLICE = 500


def slices(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[i:i + IN_SLICE] for i in range(0, len(values), IN_SLICE)]


class Transitions(Results):
    """Status changes and claims of runs (the Registry's run-lifecycle half)."""

    def transition(self, run_id: str, new: str, *, error: str | None = None, host: str | None = None,
                   device: str | None = None, worker: str | None = None,
                   only_from: Collection[str] | None = None, holder: str | None = None,
                   check: Callable[[Any, RunRecord], bool] | None = None,
                   provenance: dict | None = None, step: int | None = None) -> bool:
        """Move a run to status `new` (running: `worker`, the process that holds it, and host and device
        where it trains; an end: the error, if any). With `only_from` (and `holder`), nothing happens
        unless the run is in one of those statuses (and held by that process); `check(conn, run)` decides
        on the locked row, in the same transaction, whether the move happens (False) or is refused (it
        raises). Returns whether it moved. An illegal move raises UsageError.
        `provenance` (running only): training starts here, from iteration `step`, computed by this
        record (fqvae_cli.provenance.collect); the start is recorded with the move."""
        host = opt_text(host, "host", 255)
        device = opt_text(device, "device", 64)
        worker = opt_text(worker, "worker", 255)
        if new == RUNNING and host is None:
            host = socket.gethostname()
        if provenance is not None and new != RUNNING:
            raise UsageError(f"a start's provenance goes with a move to running, not to {new}.")
        start = None if provenance is None else StartRow(provenance, step, host)

        def fn(conn: Any) -> bool:
            run = self._get(conn, run_id, lock=True)
            if only_from is not None and run.status not in only_from:
                return False
            if holder is not None and run.worker != holder:
                return False
            if check is not None and not check(conn, run):
                return False
            lifecycle.require(run.short_id, run.status, new)
            values = lifecycle.columns(new, self._now(), worker=worker, error=error, host=host, device=device)
            conn.execute(update(RUNS).where(RUNS.c.id == run.id).values(values))
            if start is not None:
                self._record_starts(conn, run.id, [start])
            return True

        return self._tx(fn, write=True)

    def _record_starts(self, conn: Any, run_id: str, starts: Sequence[StartRow]) -> None:
        """Add start rows for a run (a start without a time started now); one statement each, as
        PostgreSQL's now() cannot be a parameter of a batch."""
        ids = self._provenance_ids(conn, [s.provenance for s in starts])
        for s in starts:
            conn.execute(insert(STARTS).values(
                run_id=run_id, provenance_id=ids[provenance_key(s.provenance)[1]], step=s.step, host=s.host,
                started_at=self._stamp(s.started_at) or self._now()))

    def heartbeat(self, run_id: str) -> bool:
        """Refresh a running run's heartbeat. False when the run is no longer running (finished, or
        requeued as stale), which tells its worker to stop."""
        return self._update(run_id, {"heartbeat_at": self._now()}, where=RUNS.c.status == RUNNING) > 0

    def holder_state(self, run: RunRecord, stale_after_s: float = DEFAULT_STALE_S) -> str:
        """'alive', 'dead' or 'stale' for a running run (liveness.run_state by the server's clock)."""
        now = self._tx(self._clock, write=False)
        return liveness.run_state(run, now, stale_after_s)

    # -- one writer per run -------------------------------------------------------------------------

    def claim_next_queued(self, worker: str, *, only: Collection[str] | None = None) -> RunRecord | None:
        """Take the oldest queued run for `worker`, or None when the queue is empty: the oldest is read,
        then claimed by a transition that only moves it if it is still queued, so two workers never
        take the same run (the loser reads the next oldest). `only`: take none but these runs (full or
        short ids), e.g. the runs of one table; any other queued run stays queued."""
        worker = opt_text(worker, "worker", 255)
        queued = select(RUNS.c.id, RUNS.c.created_at).where(RUNS.c.status == QUEUED)
        if only is None:
            choices = [queued]
        else:
            refs = sorted({str(r) for r in only})
            # In slices, so a long list stays within the engines' limits on bound parameters.
            choices = [queued.where(or_(RUNS.c.id.in_(part), RUNS.c.short_id.in_(part))) for part in slices(refs)]

        def oldest(conn: Any) -> str | None:
            rows = [conn.execute(stmt.order_by(RUNS.c.created_at, RUNS.c.id).limit(1)).first() for stmt in choices]
            rows = [row for row in rows if row is not None]
            return min(rows, key=lambda row: (row.created_at, row.id)).id if rows else None

        while True:
            run_id = self._tx(oldest, write=False)
            if run_id is None:
                return None
            if self.transition(run_id, RUNNING, worker=worker, only_from=(QUEUED,)):
                return self.get_run(run_id)

    def claim_for_resume(self, run_id: str, *, host: str | None = None, pid: int | None = None,
                         stale_after_s: float = DEFAULT_STALE_S) -> RunRecord:
        """Atomically make this process (host:pid) the one writer of an unfinished run, as a worker's
        claim does. Refuses a finished run, and a running one whose holder is alive (a live pid on this
        machine, or a heartbeat fresher than stale_after_s elsewhere), naming the holder."""
        host = opt_text(host, "host", 255) or socket.gethostname()
        holder = f"{host}:{liveness.holder_id().rpartition(':')[2] if pid is None else int(pid)}"

        def resumable(conn: Any, run: RunRecord) -> bool:
            self._require_resumable(conn, run, holder, stale_after_s)
            return True

        self.transition(run_id, RUNNING, worker=holder, host=host, check=resumable)
        return self.get_run(run_id)

    def require_resumable(self, run: RunRecord, stale_after_s: float = DEFAULT_STALE_S) -> None:
        """What claim_for_resume would refuse (a finished run, a live holder), checked without claiming,
        so a command can say so before any other work."""
        self._tx(lambda conn: self._require_resumable(conn, run, liveness.holder_id(), stale_after_s), write=False)

    def _require_resumable(self, conn: Any, run: RunRecord, holder: str, stale_after_s: float) -> None:
        if run.status == FINISHED:
            raise UsageError(f"run {run.short_id} already finished; nothing to resume.")
        if run.status == RUNNING and run.worker != holder:
            now = self._clock(conn)
            if liveness.run_state(run, now, stale_after_s) == liveness.ALIVE:
                beat = run.heartbeat_at or run.started_at
                age = f"; last heartbeat {(now - beat).total_seconds():.0f} s ago" if beat else ""
                who = run.worker or run.host or "another process"
                raise UsageError(f"run {run.short_id} is being trained by {who}{age}; stop it first "
                                 "(one writer per run).")

    def requeue_stale(self, older_than_s: float) -> list[str]:
        """Put back in the queue every running run whose holder is gone: a pid on this machine that no
        longer exists, or a heartbeat older than `older_than_s` seconds by the database server's clock
        (a live local holder is never taken over). Each is one transition that checks again, on the
        locked row, that the same holder is still gone. Returns their ids."""
        if not older_than_s >= 0:
            raise UsageError(f"the staleness limit must be a non-negative number of seconds, not {older_than_s}.")

        def gone(conn: Any, run: RunRecord) -> bool:
            return liveness.run_state(run, self._clock(conn), older_than_s) != liveness.ALIVE

        def candidates(conn: Any) -> list[RunRecord]:
            rows = conn.execute(select(RUNS).where(RUNS.c.status == RUNNING)).all()
            return [r for r in map(RunRecord.from_row, rows) if gone(conn, r)]

        moved = []
        for run in sorted(self._tx(candidates, write=False), key=lambda r: r.id):
            def same_and_gone(conn: Any, now_run: RunRecord, was: RunRecord = run) -> bool:
                return now_run.worker == was.worker and gone(conn, now_run)

            if self.transition(run.id, QUEUED, only_from=(RUNNING,), check=same_and_gone):
                moved.append(run.id)
        return sorted(moved)
