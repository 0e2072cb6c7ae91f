"""Time one training step of every zoo model on both trunks and print a table with images per second.

One step is Algorithm 1: a VAE update on B images, plus, for Factor models, a discriminator update on
another B images (so they consume 2B images per step). Defaults: compact trunk at batch 64 on 32x32,
paper trunk at batch 8 on 64x64; d = 12 and the Shapes3D column of Table A.3.

    python benchmarks/model_step.py                       # both trunks, every model
    python benchmarks/model_step.py --trunk compact --models ae,factorqvae --steps 20
    python benchmarks/model_step.py --trunk compact --models qlae,tripod --baseline qlae --rounds 3 --budget 6000

--rounds N times the models in turn N times (on a shared machine the load changes from minute to minute;
interleaving gives every model the same conditions) and prints the median. --baseline NAME adds each
model's step time relative to that model's, measured in the same run; --budget STEPS the wall time of
STEPS iterations at the measured rate (a profile's training budget, evaluation not included).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fqvae_cli.experiments import load_experiments
from fqvae_cli.models.trunks import count_parameters
from fqvae_cli.models.zoo import ZOO, ModelConfig, build_model

SETUPS = {"compact": {"image_size": 32, "batch": 64, "steps": 10},
          "paper": {"image_size": 64, "batch": 8, "steps": 2}}


def make_config(name: str, trunk: str, image_size: int, latent_dim: int) -> ModelConfig:
    table = (load_experiments().get("hyperparameters") or {}).get("shapes3d", {}) or {}
    fields = {**ZOO[name].defaults, **(table.get(name) or {})}
    return ModelConfig.from_flat(name=name, trunk=trunk, image_size=image_size, latent_dim=latent_dim, **fields)


def time_model(cfg: ModelConfig, batch: int, steps: int, warmup: int = 2) -> tuple[float, int, int]:
    """(seconds per step, images per step, parameters)."""
    model = build_model(cfg).train()
    vae_opt = torch.optim.Adam(model.vae_parameters(), lr=1e-3)
    disc_opt = torch.optim.Adam(model.discriminator_parameters(), lr=1e-3) if model.spec.total_correlation else None
    per_step = 2 * batch if disc_opt else batch
    x_all = torch.rand(per_step, 3, cfg.image_size, cfg.image_size) - 0.5

    def step() -> None:
        x, x_other = x_all[:batch], x_all[batch:]
        total, _, tc_input = model.training_step_losses(x, 0.5)
        vae_opt.zero_grad(set_to_none=True)
        total.backward()
        vae_opt.step()
        if disc_opt is not None:
            d_loss = model.discriminator_loss(tc_input, x_other, 0.5)
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps, per_step, count_parameters(model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trunk", choices=["compact", "paper", "both"], default="both")
    ap.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo names")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per model (default 10 compact, 2 paper)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latent-dim", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=1, help="time the models in turn this many times (median)")
    ap.add_argument("--baseline", default=None, help="a model of --models to compare each step time against")
    ap.add_argument("--budget", type=int, default=None, help="iterations to convert into a wall time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    trunks = ["compact", "paper"] if args.trunk == "both" else [args.trunk]
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.baseline and args.baseline not in names:
        ap.error(f"--baseline {args.baseline} is not one of --models")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, d = {args.latent_dim}")
    extra = (f" {'x ' + args.baseline:>10}" if args.baseline else "") + (f" {'budget':>9}" if args.budget else "")
    print(f"{'trunk':8} {'model':12} {'size':>5} {'batch':>5} {'params':>11} {'ms/step':>9} {'images/s':>9}{extra}")
    for trunk in trunks:
        setup = SETUPS[trunk]
        steps = args.steps or setup["steps"]
        configs = {name: make_config(name, trunk, setup["image_size"], args.latent_dim) for name in names}
        times: dict[str, list[float]] = {name: [] for name in names}
        sizes: dict[str, tuple[int, int]] = {}
        for _ in range(args.rounds):
            for name in names:
                sec, images, params = time_model(configs[name], setup["batch"], steps)
                times[name].append(sec)
                sizes[name] = (images, params)
        median = {name: statistics.median(t) for name, t in times.items()}
        for name in names:
            sec, (images, params) = median[name], sizes[name]
            batch = f"{setup['batch']}x2" if images > setup["batch"] else str(setup["batch"])
            line = (f"{trunk:8} {name:12} {setup['image_size']:>5} {batch:>5} {params:>11,} {sec * 1e3:>9.1f} "
                    f"{images / sec:>9.0f}")
            if args.baseline:
                line += f" {sec / median[args.baseline]:>10.2f}"
            if args.budget:
                line += f" {sec * args.budget / 60:>7.1f} m"
            print(line, flush=True)


if __name__ == "__main__":
    main()
