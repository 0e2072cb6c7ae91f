"""Conversion speed of a file in the 3dshapes.h5 layout into the prepared store: an uncompressed file
and a gzip-chunked one (like the official download). The source is rendered first with
`fqvae data synth`'s writer; everything is written to a temporary folder that is deleted afterwards.

    python benchmarks/data_convert.py [--image-size 32] [--grid official]
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
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--grid", default="official", choices=["official", "small"])
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("FQVAE_PLAIN_PROGRESS", "1")
    os.environ.setdefault("FQVAE_LOG_INTERVAL", "1000000")

    from fqvae_cli.data import shapes3d, synthetic
    from fqvae_cli.data.store import write_store

    work = Path(tempfile.mkdtemp(prefix="fqvae-bench-", dir=args.dir))
    try:
        rates = {}
        for compress in (False, True):
            src = work / f"3dshapes-{'gzip' if compress else 'plain'}.h5"
            t0 = time.perf_counter()
            synthetic.write_h5(src, image_size=args.image_size, grid=args.grid, compress=compress)
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            plan = shapes3d.plan(src)
            t_check = time.perf_counter() - t0
            t0 = time.perf_counter()
            ds, _ = write_store("shapes3d", plan, root=work / f"root-{compress}")
            t_conv = time.perf_counter() - t0
            n = len(ds)
            mb = n * args.image_size ** 2 * 3 / 1e6
            label = "gzip-chunked" if compress else "uncompressed"
            rates[label] = n / t_conv
            print(f"{label:13s} source {src.stat().st_size / 1e6:8,.0f} MB (rendered in {t_write:5.1f} s) | "
                  f"label check {t_check:5.2f} s | convert+hash {t_conv:6.1f} s = {n / t_conv:9,.0f} img/s, "
                  f"{mb / t_conv:6,.0f} MB/s of images")
            del ds
            shutil.rmtree(work / f"root-{compress}", ignore_errors=True)
            src.unlink()
        print(f"gzip / uncompressed speed ratio: {rates['gzip-chunked'] / rates['uncompressed']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
