"""Workers: the loop that claims queued runs from the registry, trains and evaluates them, and the
processes that run it, here (N local processes) or on Slurm through submitit.

A worker loop: requeue runs whose holder is gone (a dead local pid, or a stale heartbeat), claim the next
queued run atomically, train it (resuming from its last checkpoint when it has one), evaluate it with its
protocol, repeat. Many workers on many machines can share one PostgreSQL registry. Local workers run in
their own session: stopping the parent in any way (Ctrl-C, SIGTERM) sends each worker one SIGTERM, which
checkpoints its run and marks it interrupted, and the parent waits for them; a worker whose parent dies
without a word gets SIGTERM from the kernel (Linux)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from fqvae_cli import console
from fqvae_cli.device import available_cores, bounded_by_cores, resolve_device
from fqvae_cli.errors import UsageError
from fqvae_cli.figures.traversal import snapshot_picture
from fqvae_cli.registry.liveness import holder_id
from fqvae_cli.registry.store import DEFAULT_STALE_S, Registry
from fqvae_cli.runs.evaluation import evaluate_run
from fqvae_cli.training.session import Claimed, RunSession, RunStopped, run_session

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

# How long a stopped reproduce waits for its workers to checkpoint before killing them.
WORKER_GRACE_S = 120.0

__all__ = ["WorkerStopped", "available_cores", "dci_jobs", "execute", "run_worker", "start_local_workers",
           "stop_workers", "submit_slurm_workers", "wait_all"]


class WorkerStopped(KeyboardInterrupt):
    """A worker was stopped (Ctrl-C, SIGTERM) while it held a run; `outcome` says, in words, what became of
    that run. A KeyboardInterrupt, so every handler of a stop still sees one."""

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


def execute(reg: Registry, run: Any, device: Any, *, session: RunSession, jobs: int = 1,
            show_progress: bool = True) -> None:
    """Train the claimed `run` through its `session` (resuming from its last checkpoint if it has one, from
    iteration 0 if it stopped before its first), then evaluate it with its protocol."""
    # The evaluation below scores the test MSE; training need not do it first.
    session.train(device, draw=snapshot_picture, show_progress=show_progress, test_mse=False)
    evaluate_run(reg, run.id, device, protocol=session.cfg.eval.protocol, jobs=jobs, show_progress=show_progress)


def _status_of(reg: Registry, run: Any) -> str:
    try:
        return reg.get_run(run.id).status
    except Exception:  # noqa: BLE001 - the failure is being reported; a registry error must not hide it
        return "status unknown"


def dci_jobs(device: Any, cores: int | None = None) -> int:
    """Processes for a worker's DCI fits. With a GPU, evaluation is the worker's CPU phase and the device
    waits on it, so the fits take every core the worker holds (`cores`; default all this process may
    use). On the CPU, sibling workers train on the other cores (reproduce runs one per core pair), so 1."""
    if device.type == "cuda":
        return max(1, cores or available_cores())
    return 1


def run_worker(reg: Registry, device: Any, *, once: bool = False, max_runs: int | None = None,
               stale_after_s: float = DEFAULT_STALE_S, jobs: int | None = None, show_progress: bool = True,
               on_run: Any = None, only: Collection[str] | None = None) -> int:
    """Claim and execute queued runs until none is left (or the limits are reached). Returns the count.
    `jobs`: processes for the DCI fits, default dci_jobs(device). `only`: claim none but these runs (ids
    or short ids), as `reproduce` does for its table; other queued runs stay queued. A stop while a run
    is held raises WorkerStopped, which says what became of the run."""
    jobs = jobs or dci_jobs(device)
    me = holder_id()
    done = 0
    while True:
        reg.requeue_stale(stale_after_s)
        run = reg.claim_next_queued(me, only=only)
        if run is None:
            return done
        try:
            with run_session(reg, Claimed(run)) as session:
                execute(reg, run, device, session=session, jobs=jobs, show_progress=show_progress)
        except RunStopped as stop:
            how = ", and resumes when a worker claims it again" if stop.resumable else ""
            raise WorkerStopped(f"its {stop.outcome}{how}") from None
        except Exception as exc:  # noqa: BLE001 - one failed run must not stop the worker
            console.warn(f"run {run.short_id} stopped ({_status_of(reg, run)}): {exc}")
        done += 1
        if on_run is not None:
            on_run(run)
        if once or (max_runs is not None and done >= max_runs):
            return done


def start_local_workers(n: int, *, db_url: str, device: str = "cpu", threads: int | None = None,
                        stale_after_s: float = DEFAULT_STALE_S,
                        only: Collection[str] | None = None) -> list[subprocess.Popen]:
    """N `fqvae worker` processes on this machine sharing the registry at db_url (N at most the cores this
    process may use). Each runs in its own session, so a terminal's Ctrl-C reaches only this process, which
    stops them (wait_all). `only`: the runs they may claim, handed over on their standard input (no
    command-line length limit)."""
    n = bounded_by_cores(n, "--workers")
    threads = threads or max(1, available_cores() // n)
    procs = []
    for _ in range(n):
        env = {**os.environ, "FQVAE_DB": db_url, "OMP_NUM_THREADS": str(threads),
               "FQVAE_PARENT_PID": str(os.getpid())}
        args = [sys.executable, "-m", "fqvae_cli", "worker", "--device", device, "--threads", str(threads),
                "--stale-after", str(stale_after_s), "--quiet"]
        proc = subprocess.Popen(args + (["--runs", "-"] if only is not None else []), env=env,
                                start_new_session=True, stdin=subprocess.PIPE if only is not None else None,
                                text=True)
        if only is not None:
            try:
                proc.stdin.write("".join(f"{ref}\n" for ref in only))
                proc.stdin.close()
            except BrokenPipeError:  # the worker died at start; wait_all reports its exit code
                pass
        procs.append(proc)
    return procs


def stop_workers(procs: list[subprocess.Popen], grace_s: float = WORKER_GRACE_S) -> None:
    """One SIGTERM to each live worker (it checkpoints and marks its run interrupted), then wait; a
    worker still alive after `grace_s` is killed."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_all(procs: list[subprocess.Popen], poll: Any = None, interval: float = 2.0) -> list[int]:
    """Wait for every worker; if this process is stopped meanwhile (KeyboardInterrupt: Ctrl-C, or
    SIGTERM through fqvae_cli.signals), stop the workers first, then re-raise."""
    try:
        while any(p.poll() is None for p in procs):
            if poll is not None:
                poll()
            time.sleep(interval)
        if poll is not None:
            poll()
    except BaseException:
        # Signals arriving while the workers shut down must not cut the wait short.
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop_workers(procs)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        raise
    return [p.returncode for p in procs]


def die_with_parent() -> None:
    """In a worker started by start_local_workers: exit (SIGTERM) when the parent dies, even by SIGKILL
    (Linux prctl PR_SET_PDEATHSIG); elsewhere a no-op."""
    parent = os.environ.get("FQVAE_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _slurm_worker(db_url: str, device: str, stale_after_s: float, only: list[str] | None = None) -> int:
    """The function a Slurm (or submitit local) job runs."""
    return run_worker(Registry(db_url), resolve_device(device), stale_after_s=stale_after_s, show_progress=False,
                      only=only)


def submit_slurm_workers(n: int, *, db_url: str, folder: str, device: str = "auto", partition: str | None = None,
                         gpus: int = 0, time_min: int = 600, cpus: int | None = None, cluster: str | None = None,
                         stale_after_s: float = DEFAULT_STALE_S, only: Collection[str] | None = None) -> list[Any]:
    """Submit N worker jobs as one job array. `cluster='local'` runs them through submitit's local executor.
    `only`: the runs the jobs may claim (run_worker)."""
    try:
        import submitit  # optional: only the Slurm executor needs it
    except ImportError:
        raise UsageError("the Slurm executor needs submitit: pip install 'fqvae[slurm]'.") from None
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params: dict = {"timeout_min": time_min, "slurm_array_parallelism": n}
    if gpus:
        params["gpus_per_node"] = gpus
    if cpus:
        params["cpus_per_task"] = cpus
    if partition:
        params["slurm_partition"] = partition
    ex.update_parameters(**params)
    runs = None if only is None else list(only)
    return ex.map_array(_slurm_worker, [db_url] * n, [device] * n, [stale_after_s] * n, [runs] * n)
