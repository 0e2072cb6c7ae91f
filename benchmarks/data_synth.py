"""Speed of the procedural Shapes3D: ray tracing of the 480 geometries, colouring, and a full build of
the official grid straight into a prepared store, at 32x32 and 64x64. Outputs go to a temporary
folder that is deleted afterwards (the 64x64 store is ~5.9 GB).

    python benchmarks/data_synth.py [--sizes 32 64] [--grid official] [--workers 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--grid", default="official", choices=["official", "small"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = ap.parse_args()
    os.environ.setdefault("FQVAE_PLAIN_PROGRESS", "1")
    os.environ.setdefault("FQVAE_LOG_INTERVAL", "1000000")

    from fqvae_cli.data import synthetic
    from fqvae_cli.data.store import write_store

    space = synthetic.synth_space(args.grid)
    print(f"grid {args.grid}: {space.size:,} images, {space.sizes[3] * space.sizes[4] * space.sizes[5]} "
          f"geometries, {os.cpu_count()} cpus, compose workers {args.workers}")
    for size in args.sizes:
        t0 = time.perf_counter()
        synthetic.all_geometry_weights(space, size)
        t_geom = time.perf_counter() - t0

        t0 = time.perf_counter()
        n = sum(len(block) for _, block in synthetic.render_chunks(space, size, workers=args.workers))
        t_mem = time.perf_counter() - t0

        work = Path(tempfile.mkdtemp(prefix="fqvae-bench-", dir=args.dir))
        try:
            t0 = time.perf_counter()
            ds, _ = write_store("synth3d", synthetic.store_plan(args.grid, image_size=size, workers=args.workers),
                                root=work)
            t_store = time.perf_counter() - t0
            gb = ds.disk_bytes() / 1e9
            del ds
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"{size}x{size}: geometry {t_geom:6.1f} s | render in memory {t_mem:6.1f} s "
              f"({n / t_mem:9,.0f} img/s) | build store {t_store:6.1f} s ({n / t_store:9,.0f} img/s, "
              f"{gb:.2f} GB written)")


if __name__ == "__main__":
    main()
