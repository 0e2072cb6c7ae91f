"""What snapshots and codebook health cost a quick-profile run, as a share of its training time.

Times, on the quick profile's own settings (compact trunk, batch 64, synth3d 32x32, `bf16: auto`):
one training iteration (the real TrainStep), one snapshot (the picture, its PNG written and hashed, as
the recorder does) and one codebook-health measurement (at every logged iteration, discrete models).
Then the share of a whole run: snapshots at the default (about ten per run) plus health every
`train.log_every` iterations, against `train.steps` iterations. One thread by default, as each of
`make demo`'s two workers trains.

    python benchmarks/snapshots.py                          # factorqvae and qvae
    python benchmarks/snapshots.py --models ae,factorqvae --iterations 100 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from fqvae_cli.data.sampler import BatchSampler
from fqvae_cli.data.store import open_dataset
from fqvae_cli.device import native_bf16
from fqvae_cli.experiments import resolve_run_config
from fqvae_cli.figures.traversal import snapshot_picture
from fqvae_cli.files import sha256_file
from fqvae_cli.models.zoo import ZOO, build_model
from fqvae_cli.training.snapshots import Snapshots, write_png
from fqvae_cli.training.step import Optimizers, TrainStep


def seconds(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def measure(name: str, iterations: int, repeat: int) -> dict:
    cfg = resolve_run_config(name, None, "quick", 0, {})
    cpu = torch.device("cpu")
    train = cfg.train.model_copy(update={"bf16": native_bf16(cpu) if cfg.train.bf16 == "auto" else cfg.train.bf16})
    ds = open_dataset(cfg.dataset)
    torch.manual_seed(0)
    model = build_model(cfg.model).to(memory_format=torch.channels_last).train()
    factor = ZOO[name].total_correlation
    opts = Optimizers.for_model(model, train, factor)
    images = 2 * train.batch_size if factor else train.batch_size
    sampler = BatchSampler(ds, ds.split()["train"], images, seed=0, device=cpu, channels_last=True)
    step = TrainStep(model, opts, train, cpu, half=train.batch_size)
    batches = [sampler.batch(i) for i in range(8)]
    count = iter(range(10**9))
    t_iter = seconds(lambda: step(batches[next(count) % 8], 1e-3, 0.5), iterations)
    views = Snapshots(model, ds, cpu, seed=cfg.eval.seed, draw=snapshot_picture)
    with tempfile.TemporaryDirectory() as tmp:
        def snapshot() -> None:
            path = Path(tmp) / "snapshots" / "step_00000001.png"
            write_png(views.picture(model, 1), path)
            sha256_file(path)

        t_snap = seconds(snapshot, repeat)
        size = (Path(tmp) / "snapshots" / "step_00000001.png").stat().st_size
    t_health = seconds(lambda: views.health(model), repeat) if views.n_codes else 0.0
    steps = train.steps
    n_snap = steps // train.snapshot_interval(steps)
    n_health = steps // train.log_every if views.n_codes else 0
    run = steps * t_iter
    return {"model": name, "iter_ms": t_iter * 1e3, "snap_ms": t_snap * 1e3, "health_ms": t_health * 1e3,
            "png_kb": size / 1e3, "n_snap": n_snap, "n_health": n_health, "run_s": run,
            "share": (n_snap * t_snap + n_health * t_health) / run, "bf16": train.bf16, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="factorqvae,qvae")
    ap.add_argument("--iterations", type=int, default=60, help="training iterations timed per model")
    ap.add_argument("--repeat", type=int, default=5, help="snapshots and health measurements timed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)")
    print(f"{'model':<11} {'iteration':>10} {'snapshot':>9} {'health':>8} {'PNG':>7}   per quick run "
          f"(snapshots + health / training)")
    for name in args.models.split(","):
        r = measure(name, args.iterations, args.repeat)
        print(f"{r['model']:<11} {r['iter_ms']:>8.1f}ms {r['snap_ms']:>7.1f}ms {r['health_ms']:>6.1f}ms "
              f"{r['png_kb']:>5.0f}kB   {r['n_snap']} x {r['snap_ms'] / 1e3:.2f}s + {r['n_health']} x "
              f"{r['health_ms'] / 1e3:.3f}s over {r['steps']} x {r['iter_ms'] / 1e3:.3f}s = {r['run_s']:.0f}s: "
              f"{100 * r['share']:.2f}% (bf16 {r['bf16']})")


if __name__ == "__main__":
    main()
