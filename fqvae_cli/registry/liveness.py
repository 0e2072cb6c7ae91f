"""Is the process that holds a running run still alive?

A running run names its holder as `host:pid` (runs.worker). Across machines only the heartbeat can
tell; on the holder's own machine the pid answers at once, so a run whose process died (SIGKILL, a
crash before the first heartbeat) is recognised without waiting, and a healthy local run is never
taken over however short a staleness limit someone passes."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

ALIVE, DEAD, STALE = "alive", "dead", "stale"  # a holder's states


def holder_id(pid: int | None = None) -> str:
    """`host:pid` of this process (or of `pid` on this host)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


def local_holder(worker: str | None) -> int | None:
    """The pid of a holder on this machine, or None (no holder, or one on another machine)."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return int(pid)


def holder_state(worker: str | None, heartbeat_at: datetime | None, now: datetime, stale_after_s: float) -> str:
    """'alive' (a live local pid, or a fresh heartbeat elsewhere), 'dead' (a local pid that no longer
    exists) or 'stale' (no heartbeat within stale_after_s)."""
    pid = local_holder(worker)
    if pid is not None:
        return ALIVE if pid_alive(pid) else DEAD
    if heartbeat_at is not None and now - heartbeat_at <= timedelta(seconds=stale_after_s):
        return ALIVE
    return STALE


def run_state(run: Any, now: datetime, stale_after_s: float) -> str:
    """holder_state of a RunRecord."""
    return holder_state(run.worker, run.heartbeat_at or run.started_at, now, stale_after_s)
