"""Random-batch throughput from a prepared store's memory map: uint8 gathers (BatchSampler on the
train split), the float conversion on top, and the whole-subset-on-device gather for comparison.
The page cache is warmed first (one sequential pass), so the figures are the steady state of a
training run whose dataset fits in RAM.

    python benchmarks/data_batches.py [--dataset synth3d] [--batch 256] [--steps 200] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synth3d")
    ap.add_argument("--root", default=None)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    os.environ.setdefault("FQVAE_PLAIN_PROGRESS", "1")

    import numpy as np
    import torch

    from fqvae_cli.data.sampler import BatchSampler
    from fqvae_cli.data.store import open_dataset

    if args.threads:
        torch.set_num_threads(args.threads)

    ds = open_dataset(args.dataset, args.root)
    t0 = time.perf_counter()
    chunk = 65536
    total = 0
    for a in range(0, len(ds), chunk):
        total += int(np.asarray(ds.images[a:a + chunk]).sum(dtype=np.uint64) & 1)
    t_seq = time.perf_counter() - t0
    print(f"{ds.name}: {len(ds):,} images {ds.image_size}x{ds.image_size}, batch {args.batch}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"sequential pass (warms the page cache): {len(ds) / t_seq:12,.0f} img/s")

    train = ds.split()["train"]
    results = {}
    for label, on_device, fn in [("uint8 gather (memmap)", False, "uint8_batch"),
                                 ("float batch (memmap)", False, "batch"),
                                 ("float batch (subset resident)", True, "batch")]:
        s = BatchSampler(ds, train, args.batch, seed=0, device=args.device, on_device=on_device)
        getattr(s, fn)(0)
        t0 = time.perf_counter()
        for step in range(1, args.steps + 1):
            out = getattr(s, fn)(step)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        results[label] = args.steps * args.batch / dt
        print(f"{label:32s} {results[label]:12,.0f} img/s  ({dt / args.steps * 1e3:6.2f} ms/batch)")
        del out, s
    base = results["uint8 gather (memmap)"]
    print("ratios to the uint8 gather: " + ", ".join(f"{k} {v / base:.2f}x" for k, v in results.items()))


if __name__ == "__main__":
    main()
