"""Sweeps: expand a paper table or a grid into queued runs in the registry, and the workers that
claim, train and evaluate them, here (N processes) or on Slurm through submitit.

A worker loop: requeue runs whose heartbeat went stale (their worker died), claim the next queued run
atomically, train it (resuming from its last checkpoint when it has one), evaluate it with its
protocol, repeat. Many workers on many machines can share one PostgreSQL registry."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from fqvae_cli.errors import ConfigError, UsageError

DEFAULT_STALE_S = 300.0


@dataclass
class QueueReport:
    queued: list[str]  # short ids newly queued or requeued
    to_evaluate: list[str]  # finished runs that lack metrics
    done: list[str]  # finished and evaluated
    busy: list[str]  # running elsewhere (fresh heartbeat)
    failed: list[str]  # failed runs left alone (see retry_failed)
    protocol: str = "paper"  # the metric protocol the queued runs are evaluated with


def queue_table(reg: Any, number: str, profile: str, *, datasets: list[str] | None = None,
                rows: list[str] | None = None, models: list[str] | None = None, seeds: int = 1,
                overrides: dict | None = None, retry_failed: bool = False) -> QueueReport:
    """Make sure every (dataset, row, seed) cell of a paper table has a run; queue what is missing.
    Idempotent: finished runs are kept, interrupted ones are requeued to resume, nothing is redone."""
    from fqvae_cli.config import deep_merge, load_experiments, resolve_run_config
    from fqvae_cli.tables import cell_runs, default_datasets

    exp = load_experiments()
    if number not in exp["tables"]:
        raise ConfigError(f"unknown paper table '{number}'; choose one of: {', '.join(exp['tables'])}.")
    spec = exp["tables"][number]
    keys = [r["key"] for r in spec["rows"]]
    for k in rows or []:
        if k not in keys:
            raise UsageError(f"table {number} has no row '{k}'; its rows are: {', '.join(keys)}.")
    chosen = [r for r in spec["rows"] if (not rows or r["key"] in rows) and (not models or r["model"] in models)]
    if not chosen:
        raise UsageError(f"no row of table {number} matches the given --rows/--models.")
    report = QueueReport([], [], [], [], [])
    for ds in datasets or default_datasets(number, profile):
        # One query per dataset; table rows have distinct model configs, so no cell sees another's new run.
        runs = reg.find_runs(dataset=ds, profile=profile)
        for row in chosen:
            extra = deep_merge(overrides or {}, {"model": dict(row.get("set", {}))})
            for seed in range(seeds):
                cfg = resolve_run_config(row["model"], ds, profile, seed, extra)
                want = cfg.model.model_dump(mode="json")
                existing = [r for r in cell_runs(runs, row["model"], want) if r.seed == seed]
                report.protocol = cfg.eval.protocol
                _place(reg, cfg, existing, report, retry_failed, cfg.eval.protocol)
    return report


def _place(reg: Any, cfg: Any, existing: list[Any], report: QueueReport, retry_failed: bool, protocol: str) -> None:
    by_status: dict[str, list[Any]] = {}
    for r in existing:
        by_status.setdefault(r.status, []).append(r)
    for r in by_status.get("finished", []):
        if reg.latest_metrics(r.id, protocol):
            report.done.append(r.short_id)
            return
    if by_status.get("finished"):
        report.to_evaluate.append(by_status["finished"][0].short_id)
        return
    if by_status.get("queued"):
        report.queued.append(by_status["queued"][0].short_id)
        return
    if by_status.get("running"):
        report.busy.append(by_status["running"][0].short_id)
        return
    if by_status.get("interrupted"):
        r = by_status["interrupted"][0]
        reg.set_status(r.id, "queued")
        report.queued.append(r.short_id)
        return
    if by_status.get("failed") and not retry_failed:
        report.failed.append(by_status["failed"][0].short_id)
        return
    run = reg.create_run(model=cfg.model.name, dataset=cfg.dataset, profile=cfg.profile, seed=cfg.seed,
                         config=cfg.model_dump(mode="json"), status="queued")
    report.queued.append(run.short_id)


# ------------------------------------------------------------------ grids


def parse_grid(text: str) -> list[dict]:
    """'model=qvae,factorqvae seed=0..4 set.beta=1e-4,1e-3 dataset=synth3d profile=quick' -> one dict per
    combination with keys model, dataset, profile, seed and 'set' (dotted override -> value)."""
    from fqvae_cli.config import parse_value

    axes: list[tuple[str, list]] = []
    for token in text.split():
        if "=" not in token:
            raise UsageError(f"grid entries look like key=v1,v2 or seed=0..4; got '{token}'.")
        key, _, raw = token.partition("=")
        if key == "seed" and ".." in raw:
            lo, _, hi = raw.partition("..")
            try:
                values: list = list(range(int(lo), int(hi) + 1))
            except ValueError:
                raise UsageError(f"seed range must be integers like 0..4, got '{raw}'.") from None
        else:
            values = [parse_value(v) for v in raw.split(",") if v != ""]
        if key not in ("model", "dataset", "profile", "seed") and not key.startswith("set."):
            raise UsageError(f"unknown grid key '{key}'; use model, dataset, profile, seed or set.KEY.")
        if not values:
            raise UsageError(f"grid key '{key}' has no values.")
        axes.append((key, values))
    if not any(k == "model" for k, _ in axes):
        raise UsageError("a grid needs model=...")
    combos = []
    for values in itertools.product(*[v for _, v in axes]):
        point: dict = {"set": {}}
        for (key, _), v in zip(axes, values, strict=True):
            if key.startswith("set."):
                point["set"][key[4:]] = v
            else:
                point[key] = v
        combos.append(point)
    return combos


def queue_grid(reg: Any, text: str, *, profile: str = "quick") -> list[str]:
    from fqvae_cli.config import parse_overrides, resolve_run_config

    queued = []
    for p in parse_grid(text):
        overrides = parse_overrides([f"{k}={v}" for k, v in p["set"].items()])
        cfg = resolve_run_config(str(p["model"]), p.get("dataset"), str(p.get("profile", profile)),
                                 int(p.get("seed", 0)), overrides)
        run = reg.create_run(model=cfg.model.name, dataset=cfg.dataset, profile=cfg.profile, seed=cfg.seed,
                             config=cfg.model_dump(mode="json"), status="queued")
        queued.append(run.short_id)
    return queued


# ------------------------------------------------------------------ workers


def execute(reg: Any, run: Any, device: Any, *, jobs: int = 1, show_progress: bool = True) -> None:
    """Train `run` (resuming from its last checkpoint if it has one), then evaluate it."""
    from fqvae_cli.config import build_run_config
    from fqvae_cli.evaluation import evaluate_run
    from fqvae_cli.training.loop import latest_checkpoint, train_run

    cfg = build_run_config(run.config)
    if run.status != "finished":
        resume = latest_checkpoint(reg, run.id) is not None
        train_run(cfg, reg, run, device, resume=resume, show_progress=show_progress)
    evaluate_run(reg, run.id, device, protocol=cfg.eval.protocol, jobs=jobs, show_progress=show_progress)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(reg: Any, device: Any, *, once: bool = False, max_runs: int | None = None,
               stale_after_s: float = DEFAULT_STALE_S, jobs: int = 1, show_progress: bool = True,
               on_run: Any = None) -> int:
    """Claim and execute queued runs until none is left (or the limits are reached). Returns the count."""
    me = worker_id()
    done = 0
    while True:
        reg.requeue_stale(stale_after_s)
        run = reg.claim_next_queued(me)
        if run is None:
            return done
        try:
            execute(reg, run, device, jobs=jobs, show_progress=show_progress)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed run must not stop the worker
            from fqvae_cli import console

            console.warn(f"run {run.short_id} failed: {exc}")
        done += 1
        if on_run is not None:
            on_run(run)
        if once or (max_runs is not None and done >= max_runs):
            return done


def start_local_workers(n: int, *, db_url: str, device: str = "cpu", threads: int | None = None,
                        stale_after_s: float = DEFAULT_STALE_S) -> list[subprocess.Popen]:
    """N `fqvae worker` processes on this machine sharing the registry at db_url."""
    threads = threads or max(1, (os.cpu_count() or 1) // n)
    procs = []
    for _ in range(n):
        env = {**os.environ, "FQVAE_DB": db_url, "OMP_NUM_THREADS": str(threads)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fqvae_cli", "worker", "--device", device, "--threads", str(threads),
             "--stale-after", str(stale_after_s), "--quiet"], env=env))
    return procs


def wait_all(procs: list[subprocess.Popen], poll: Any = None, interval: float = 2.0) -> list[int]:
    try:
        while any(p.poll() is None for p in procs):
            if poll is not None:
                poll()
            time.sleep(interval)
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(2)
        for p in procs:
            p.wait()
        raise
    if poll is not None:
        poll()
    return [p.returncode for p in procs]


def _slurm_worker(db_url: str, device: str, stale_after_s: float) -> int:
    """The function a Slurm (or submitit local) job runs."""
    from fqvae_cli.device import resolve_device
    from fqvae_cli.registry.store import Registry

    return run_worker(Registry(db_url), resolve_device(device), stale_after_s=stale_after_s, show_progress=False)


def submit_slurm_workers(n: int, *, db_url: str, folder: str, device: str = "auto", partition: str | None = None,
                         gpus: int = 0, time_min: int = 600, cpus: int | None = None, cluster: str | None = None,
                         stale_after_s: float = DEFAULT_STALE_S) -> list[Any]:
    """Submit N worker jobs as one job array. `cluster='local'` runs them through submitit's local executor."""
    try:
        import submitit
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
    return ex.map_array(_slurm_worker, [db_url] * n, [device] * n, [stale_after_s] * n)
