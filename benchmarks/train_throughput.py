"""Training throughput of the real step (sampler + TrainStep) under each speed setting, in one run.

For each model and each variant (a set of `train.*` speed settings), a fresh model trains for --iters
iterations on random images after --warmup iterations that are timed separately (they hold
torch.compile's compilation). Images/s counts every image a step consumes (2B for Factor models).
`ratio` is against the first variant, `baseline` (float32, NCHW, eager: the settings the quick profile
had before the speed work), measured in the same run, so a busy machine slows both sides alike.
GFLOP per step come from torch's FLOP counter; `of peak` compares with a matmul of the variant's
precision measured here (bfloat16 when the variant uses bf16; on CUDA, TF32 when it allows TF32; else float32).

    python benchmarks/train_throughput.py                       # CPU, compact trunk, batch 64, 32x32
    python benchmarks/train_throughput.py --variants baseline,bf16+channels_last --batch 128
    python benchmarks/train_throughput.py --layout               # 2 one-thread processes vs 1 two-thread
    python benchmarks/train_throughput.py --device cuda --trunk paper --batch 256 --image-size 64 \\
        --variants fp32,tf32,bf16,bf16+compile
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

VARIANTS = {
    "baseline": {"bf16": False, "channels_last": False, "compile": False, "tf32": False},
    "fp32": {"bf16": False, "channels_last": True, "compile": False, "tf32": False},
    "tf32": {"bf16": False, "channels_last": True, "compile": False, "tf32": True},
    "channels_last": {"bf16": False, "channels_last": True, "compile": False, "tf32": False},
    "bf16": {"bf16": True, "channels_last": False, "compile": False},
    "bf16+channels_last": {"bf16": True, "channels_last": True, "compile": False},
    "compile": {"bf16": False, "channels_last": False, "compile": True, "tf32": False},
    "bf16+compile": {"bf16": True, "channels_last": True, "compile": True},
}


class ImagePool:
    """Random uint8 images in memory, read like a prepared dataset (content does not change the timing)."""

    def __init__(self, size: int, n: int = 4096):
        self.images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)

    def images_at(self, idx: np.ndarray) -> np.ndarray:
        return self.images[idx]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, tf32: bool = False, n: int | None = None) -> float:
    # TF32 is set explicitly: the variants leave it as the last one asked, and a float32 matmul on
    # TF32 tensor cores runs several times faster than strict float32. On a CPU without native bfloat16
    # (AVX2 only) a bf16 matmul is emulated, about 20x slower than float32: --peak-size keeps it short.
    n = n or (8192 if device.type == "cuda" else 2048)
    reps = 20 if device.type == "cuda" else 10
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync(device)
        return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def step_gflop(model, x, half: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        total, _, tc_input = model.training_step_losses(x[:half], 0.5)
        total.backward()
        if model.spec.total_correlation:
            model.discriminator_loss(tc_input, x[half:], 0.5).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()) / 1e9


def measure(name: str, variant: str, args, device: torch.device, ds, split) -> dict:
    """Time --iters iterations after --warmup; returns the figures of one (model, variant)."""
    from fqvae_cli.data.sampler import BatchSampler
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.models.zoo import build_model
    from fqvae_cli.training.loop import configure_backend, data_on_device
    from fqvae_cli.training.step import Optimizers, TrainStep

    train = {"batch_size": args.batch, **VARIANTS[variant]}
    if args.threads:
        train["threads"] = args.threads
    # The paper trunk is timed as the paper profile builds it (TC discriminator 1000 wide, not quick's 256).
    profile = "paper" if args.trunk == "paper" else "quick"
    cfg = resolve_run_config(name, "synth3d", profile, 0, {
        "model": {"trunk": args.trunk, "image_size": args.image_size}, "train": train})
    # the small pool stands in for the dataset; its size does not matter for the timing
    configure_backend(cfg.train, device)
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    factor = model.spec.total_correlation
    per_iter = 2 * args.batch if factor else args.batch
    resident = data_on_device("auto", device, len(split), int(ds.images[0].nbytes))
    sampler = BatchSampler(ds, split, per_iter, seed=0, device=device, on_device=resident,
                           channels_last=cfg.train.channels_last)
    step = TrainStep(model, Optimizers.for_model(model, cfg.train, factor), cfg.train, device, args.batch)
    model.train()
    t0 = time.perf_counter()
    for it in range(args.warmup):
        step(sampler.batch(it), 1e-4, 0.5)
    sync(device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for it in range(args.warmup, args.warmup + args.iters):
        step(sampler.batch(it), 1e-4, 0.5)
    sync(device)
    sec = (time.perf_counter() - t0) / args.iters
    x = sampler.batch(0)
    gflop = step_gflop(model, x, args.batch)
    return {"model": name, "variant": variant, "ms": 1000 * sec, "img_s": per_iter / sec,
            "gflop": gflop, "warmup_s": warm, "bf16": cfg.train.bf16,
            "precision": "bf16" if cfg.train.bf16 else "tf32" if device.type == "cuda" and cfg.train.tf32 else "fp32"}


def layout(args) -> None:
    """Two one-thread processes at once against one two-thread process, same work each."""
    base = [sys.executable, __file__, "--json", "--models", args.models, "--variants", args.variants,
            "--iters", str(args.iters), "--warmup", str(args.warmup), "--batch", str(args.batch)]
    solo = subprocess.run(base + ["--threads", "2"], capture_output=True, text=True, check=True)
    pair = [subprocess.Popen(base + ["--threads", "1"], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate()[0]) for p in pair]
    one = json.loads(solo.stdout)
    print(f"{'model':<12} {'variant':<20} {'1 x 2 threads':>14} {'2 x 1 thread':>13} {'ratio':>6}")
    for i, row in enumerate(one):
        both = outs[0][i]["img_s"] + outs[1][i]["img_s"]
        print(f"{row['model']:<12} {row['variant']:<20} {row['img_s']:>14.0f} {both:>13.0f} "
              f"{both / row['img_s']:>5.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--trunk", default="compact", choices=["compact", "paper"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--models", default="ae,factorqvae")
    p.add_argument("--variants", default="baseline,channels_last,bf16,bf16+channels_last,compile,bf16+compile")
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1, as a reproduce worker)")
    p.add_argument("--layout", action="store_true", help="compare thread layouts instead")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--peak-size", type=int, default=None,
                   help="side of the square matmul that measures the peak (default 8192 on CUDA, 2048 on CPU)")
    args = p.parse_args()
    if args.layout:
        layout(args)
        return

    from fqvae_cli.device import device_label, resolve_device

    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    ds = ImagePool(args.image_size)
    split = np.arange(len(ds.images))
    rows = [measure(m, v, args, device, ds, split) for m in args.models.split(",")
            for v in args.variants.split(",")]
    if args.json:
        print(json.dumps(rows))
        return
    n = args.peak_size
    peaks = {"fp32": matmul_peak_tflops(device, torch.float32, n=n),
             "bf16": matmul_peak_tflops(device, torch.bfloat16, n=n)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_peak_tflops(device, torch.float32, tf32=True, n=n)
    print(f"torch {torch.__version__} on {device_label(device)}; matmul peak measured here: "
          + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in peaks.items()))
    print(f"trunk {args.trunk}, {args.image_size}x{args.image_size}, batch {args.batch} "
          f"(Factor models draw 2x), {args.iters} timed iterations after {args.warmup} warm-up")
    print(f"{'model':<12} {'variant':<20} {'ms/step':>8} {'img/s':>8} {'ratio':>6} {'warm-up s':>9} "
          f"{'GFLOP/step':>10} {'of peak':>8}")
    first: dict[str, float] = {}
    for r in rows:
        first.setdefault(r["model"], r["img_s"])
        achieved = r["gflop"] / (r["ms"] / 1000) / 1000
        print(f"{r['model']:<12} {r['variant']:<20} {r['ms']:>8.1f} {r['img_s']:>8.0f} "
              f"{r['img_s'] / first[r['model']]:>5.2f}x {r['warmup_s']:>9.1f} {r['gflop']:>10.2f} "
              f"{achieved / peaks[r['precision']]:>7.1%}")


if __name__ == "__main__":
    main()
