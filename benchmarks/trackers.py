"""What live tracking (train.trackers) adds to a quick-profile run, as a share of its time.

One short run of the quick profile's settings (compact trunk, batch 64, its log_every, snapshots at the
default, about ten per run) is trained without a tracker, then with each tracker, then without again;
each tracker's calls are timed as they happen. It prints, per tracker: the short run's wall time against
the mean of the two untracked ones; the tracker's own time split into its fixed part (start: import,
connection, the run's settings; finish) and what each logged iteration and each snapshot image cost;
and from those the share of a whole quick run (its `train.steps` iterations at the untracked run's
per-iteration time, its logs and its snapshots). MLflow writes to MLFLOW_TRACKING_URI (unset: a fresh
SQLite store in a temporary folder), W&B offline unless WANDB_MODE says otherwise. The registry and the
runs go to a temporary workspace; the dataset is read from FQVAE_DATA (or the default data folder).

    python benchmarks/trackers.py                         # 300 iterations, mlflow and wandb
    python benchmarks/trackers.py --iterations 500 --trackers mlflow --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch


class Timed:
    """A tracker whose calls are timed (seconds per method name, and how many calls)."""

    def __init__(self, inner, clock: dict):
        self.inner, self.clock, self.name = inner, clock, inner.name

    def __getattr__(self, method):
        fn = getattr(self.inner, method)

        def timed(*args, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.clock[method][0] += time.perf_counter() - t0
                self.clock[method][1] += 1

        return timed


def one_run(model: str, iterations: int, threads: int, trackers: list[str], clock: dict) -> tuple[float, object]:
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.figures.traversal import snapshot_picture
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.trackers import build, mirror, require
    from fqvae_cli.training.session import NewRun, run_session

    cfg = resolve_run_config(model, None, "quick", 0, {"train": {"steps": iterations, "threads": threads,
                                                                 "trackers": trackers}})
    require(trackers)
    mirror.build = lambda name: Timed(build(name), clock)
    with Registry() as reg, run_session(reg, NewRun(cfg)) as session:
        t0 = time.perf_counter()
        session.train(torch.device("cpu"), draw=snapshot_picture, show_progress=False)
        return time.perf_counter() - t0, cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="factorqvae")
    ap.add_argument("--iterations", type=int, default=300, help="iterations of each timed run")
    ap.add_argument("--trackers", default="mlflow,wandb")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: as each `make demo` worker)")
    args = ap.parse_args()

    from fqvae_cli.paths import data_root

    os.environ.setdefault("FQVAE_DATA", str(data_root()))
    tmp = Path(tempfile.mkdtemp(prefix="fqvae-trackers-"))
    os.environ["FQVAE_HOME"] = str(tmp / "home")
    os.environ.setdefault("FQVAE_PLAIN_PROGRESS", "1")
    os.environ.setdefault("FQVAE_LOG_INTERVAL", "3600")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_DIR", str(tmp / "wandb"))
    os.environ.setdefault("WANDB_SILENT", "true")
    (tmp / "wandb").mkdir()

    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.model}, {args.iterations} iterations per run; workspace {tmp}")
    names = [n for n in args.trackers.split(",") if n]
    base_times = []
    t, cfg = one_run(args.model, args.iterations, args.threads, [], defaultdict(lambda: [0.0, 0]))
    base_times.append(t)
    tracked = {}
    for name in names:
        clock: dict = defaultdict(lambda: [0.0, 0])
        tracked[name] = (one_run(args.model, args.iterations, args.threads, [name], clock)[0], clock)
    t, _ = one_run(args.model, args.iterations, args.threads, [], defaultdict(lambda: [0.0, 0]))
    base_times.append(t)
    base = sum(base_times) / len(base_times)
    print(f"without a tracker: {' and '.join(f'{b:.1f}s' for b in base_times)} (mean {base:.1f}s, "
          f"{1e3 * base / args.iterations:.1f} ms an iteration, test MSE included)")

    from fqvae_cli.experiments import resolve_run_config

    quick = resolve_run_config(args.model, None, "quick", 0, {}).train
    steps = quick.steps
    logs, snaps = steps // quick.log_every, steps // quick.snapshot_interval(steps)
    run_s = steps * base / args.iterations
    for name, (t, clock) in tracked.items():
        fixed = clock["start"][0] + clock["finish"][0]
        per_log = clock["log_scalars"][0] / max(1, clock["log_scalars"][1])
        per_image = clock["log_image"][0] / max(1, clock["log_image"][1])
        rows = clock["log_metric_rows"][0]
        whole = fixed + rows + logs * per_log + snaps * per_image
        print(f"{name}: {t:.1f}s, {100 * (t / base - 1):+.1f}% on this short run; tracker time {fixed:.2f}s fixed "
              f"(start {clock['start'][0]:.2f}s, finish {clock['finish'][0]:.2f}s), {1e3 * per_log:.1f} ms a "
              f"logged iteration ({clock['log_scalars'][1]}), {1e3 * per_image:.1f} ms an image "
              f"({clock['log_image'][1]}), {1e3 * rows:.1f} ms the final rows")
        print(f"  a whole quick run ({steps} iterations, {logs} logs, {snaps} snapshots, about {run_s:.0f}s here): "
              f"{whole:.1f}s, {100 * whole / run_s:.2f}% of the run")


if __name__ == "__main__":
    main()
