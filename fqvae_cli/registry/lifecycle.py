"""The life of a run: its statuses, the moves between them, and what each move writes.

    queued ──claim──> running ──> finished      (trained; evaluations attach metric rows afterwards)
      ^                 │ ├────> failed        (an error: a non-finite loss, a crash)
      │                 │ └────> interrupted   (Ctrl-C, SIGTERM, a full disk: resumable as it is)
      └──── requeue ────┘                      (its holder is gone: a dead pid or a stale heartbeat)
    interrupted, failed ──resume──> running; ──requeue──> queued
    (new) ──create──> running (this process trains it now) or queued (a worker will)

A finished run never changes status again. Every status change goes through `Registry.transition`
(the claims and the requeue of abandoned runs too), which checks `TRANSITIONS` and writes `columns(...)`;
a new run's status columns come from the same two (`require(label, None, new)`, `columns`). The database
refuses the same illegal moves (a CHECK constraint on the status and a trigger on its changes, migration
0004), so a hand-written UPDATE cannot bypass them either. This module knows nothing of SQL or of training."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fqvae_cli.errors import UsageError

QUEUED, RUNNING, FINISHED, FAILED, INTERRUPTED = "queued", "running", "finished", "failed", "interrupted"
STATUSES: tuple[str, ...] = (QUEUED, RUNNING, FINISHED, FAILED, INTERRUPTED)
# Stopped before the end, and resumable from their newest good checkpoint.
STOPPED: tuple[str, ...] = (FAILED, INTERRUPTED)
ENDED: tuple[str, ...] = (FINISHED, *STOPPED)
# Still to train or training: not yet an end.
UNFINISHED: tuple[str, ...] = (QUEUED, RUNNING, INTERRUPTED)
# How a new run begins.
BEGIN: frozenset[str] = frozenset({RUNNING, QUEUED})

TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING}),
    RUNNING: frozenset({FINISHED, FAILED, INTERRUPTED, QUEUED}),
    INTERRUPTED: frozenset({RUNNING, QUEUED}),
    FAILED: frozenset({RUNNING, QUEUED}),
    FINISHED: frozenset(),
}

# An error message kept with a run is cut to this many characters.
ERROR_LIMIT = 20_000


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise UsageError(f"unknown run status '{status}'; choose one of: {', '.join(STATUSES)}.")
    return status


def allowed(old: str | None, new: str) -> bool:
    """Whether a run may go from `old` to `new` (staying where it is is always allowed: a claim of a
    running run whose holder died keeps it running under a new holder). `old` None: a new run."""
    if old is None:
        return new in BEGIN
    return old == new or new in TRANSITIONS.get(old, frozenset())


def require(label: str, old: str | None, new: str) -> None:
    """Refuse, in one sentence, a move of run `label` from `old` (None: a run being created) to `new`."""
    check_status(new)
    if old is None and not allowed(old, new):
        raise UsageError(f"a new run starts as {RUNNING} or {QUEUED}, not {new}.")
    if not allowed(old, new):
        after = sorted(TRANSITIONS.get(old, ()))
        can = f"it can only become {' or '.join(after)}" if after else "it stays finished"
        raise UsageError(f"run {label} is {old}; it cannot become {new} ({can}).")


def columns(new: str, now: datetime, *, worker: str | None = None, host: str | None = None,
            device: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The run columns a move to `new` writes besides the status: a start stamps the start and the
    heartbeat and clears the end; a requeue clears the claim; an end stamps the end (with the error, if
    any)."""
    values: dict[str, Any] = {"status": new}
    if new == RUNNING:
        values.update(started_at=now, heartbeat_at=now, finished_at=None, error=None)
        values.update({k: v for k, v in (("worker", worker), ("host", host), ("device", device)) if v is not None})
    elif new == QUEUED:
        values.update(worker=None, started_at=None, heartbeat_at=None, finished_at=None, error=None)
    else:
        values.update(finished_at=now, heartbeat_at=now, error=None if error is None else str(error)[:ERROR_LIMIT])
    return values


# What to do with a table cell's existing run, by priority: the first action any of its runs allows wins.
# `queued` and `failed` are named after the status that leads to them.
DONE, EVALUATE, WAITING, BUSY, RESUME, RETRY = "done", "evaluate", QUEUED, "busy", "resume", FAILED
NEXT_ACTIONS = (DONE, EVALUATE, WAITING, BUSY, RESUME, RETRY)


def next_action(status: str, *, holder_alive: bool, evaluated: bool) -> str:
    """What a cell's run needs: `done` (finished and evaluated), `evaluate`, `queued` (waiting for a
    worker), `busy` (a live process trains it), `resume` (stopped, or running with its holder gone) or
    `failed`."""
    if status == FINISHED:
        return DONE if evaluated else EVALUATE
    if status == QUEUED:
        return WAITING
    if status == RUNNING:
        return BUSY if holder_alive else RESUME
    return RESUME if status == INTERRUPTED else RETRY
