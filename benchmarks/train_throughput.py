"""Training throughput through the real training loop, and how close it comes to this machine's peak.

For each model: `train_run` on the quick profile (compact trunk, batch 64, 32x32) for a few dozen
iterations on the small synth3d grid in a temporary workspace; images/s counts every image a step
consumes (2B for Factor models). Then the paper trunk (Appendix A.3, 64x64) at batch 8 for a few
steps. FLOPs per step come from torch's FLOP counter; the ratio is against a float32 matmul measured
in the same run, so a busy machine slows both sides.

    python benchmarks/train_throughput.py [--models ae,factorqvae] [--iters 60] [--paper-steps 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def step_flops(model, x, x_other) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        total, _, tc_input = model.training_step_losses(x, 0.5)
        total.backward()
        if model.spec.factor:
            model.discriminator_loss(tc_input, x_other, 0.5).backward()
    return float(counter.get_total_flops())


def loop_throughput(model_name: str, iters: int) -> tuple[float, float]:
    """(images/s through train_run, GFLOP per training step) on the quick profile."""
    from fqvae_cli.config import resolve_run_config
    from fqvae_cli.device import resolve_device
    from fqvae_cli.models.zoo import build_model
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.training.loop import train_run

    cfg = resolve_run_config(model_name, "synth3d", "quick", 0, {
        "train": {"steps": iters, "log_every": 20, "checkpoint_every": iters}, "eval": {"mse_images": 64}})
    reg = Registry()
    run = reg.create_run(model=model_name, dataset="synth3d", profile="quick", seed=0,
                         config=cfg.model_dump(mode="json"))
    result = train_run(cfg, reg, run, resolve_device("cpu"), show_progress=False)
    model = build_model(cfg.model)
    b = cfg.train.batch_size
    x = torch.rand(2 * b, 3, 32, 32) - 0.5
    return result.images_per_s, step_flops(model, x[:b], x[b:]) / 1e9


def paper_trunk(model_name: str, steps: int, batch: int = 8) -> tuple[float, float]:
    """(seconds per step, GFLOP per step) of the Appendix A.3 trunk on 64x64 at `batch`."""
    from fqvae_cli.config import resolve_run_config
    from fqvae_cli.models.zoo import build_model

    cfg = resolve_run_config(model_name, "shapes3d", "paper", 0)
    model = build_model(cfg.model).train()
    opt = torch.optim.Adam(model.vae_parameters(), lr=1e-3)
    d_opt = torch.optim.Adam(model.discriminator_parameters(), lr=1e-3) if model.spec.factor else None
    x = torch.rand(2 * batch, 3, 64, 64) - 0.5

    def step() -> None:
        total, _, tc_input = model.training_step_losses(x[:batch], 0.5)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if d_opt is not None:
            d = model.discriminator_loss(tc_input, x[batch:], 0.5)
            d_opt.zero_grad(set_to_none=True)
            d.backward()
            d_opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sec = (time.perf_counter() - t0) / steps
    return sec, step_flops(model, x[:batch], x[batch:]) / 1e9


def main() -> None:
    from fqvae_cli.models.specs import TABLE1_MODELS, ZOO

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(TABLE1_MODELS))
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--paper-steps", type=int, default=2)
    p.add_argument("--paper-models", default="ae,factorqvae")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["FQVAE_HOME"] = home
        os.environ["FQVAE_PLAIN_PROGRESS"] = "1"
        from fqvae_cli.data.store import prepare

        prepare("synth3d", grid="small", root=os.path.join(home, "data"))
        peak = matmul_peak_gflops()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"float32 matmul peak {peak:.1f} GFLOP/s")
        print(f"{'model':<12} {'trunk':<8} {'batch':>5} {'img/s':>9} {'GFLOP/step':>11} {'GFLOP/s':>8} {'of peak':>8}")
        for name in args.models.split(","):
            ips, gflop = loop_throughput(name, args.iters)
            per_step = 128 if ZOO[name].factor else 64
            achieved = gflop * ips / per_step
            print(f"{name:<12} {'compact':<8} {64:>5} {ips:>9.0f} {gflop:>11.3f} {achieved:>8.1f} "
                  f"{achieved / peak:>7.1%}")
        for name in args.paper_models.split(","):
            sec, gflop = paper_trunk(name, args.paper_steps)
            imgs = 16 if ZOO[name].factor else 8
            print(f"{name:<12} {'paper':<8} {8:>5} {imgs / sec:>9.1f} {gflop:>11.1f} {gflop / sec:>8.1f} "
                  f"{gflop / sec / peak:>7.1%}")


if __name__ == "__main__":
    main()
