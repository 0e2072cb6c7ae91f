"""Queueing a large grid: seconds and peak memory of `queue_grid` for a grid of N runs (model x seed) into a
fresh SQLite registry in a temporary workspace, and of refusing a grid of 10^20 combinations.

    python benchmarks/grid_queue.py [--runs 10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000, help="grid size (an even number: 2 models x seeds)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["FQVAE_HOME"] = home
        from fqvae_cli.errors import UsageError
        from fqvae_cli.registry.store import Registry
        from fqvae_cli.runs.sweep import queue_grid

        reg = Registry()
        t = time.perf_counter()
        huge = "model=ae " + " ".join(f"set.k{i}=" + ",".join(map(str, range(10))) for i in range(20))
        try:
            queue_grid(reg, huge, confirmed=True)
        except UsageError:
            pass
        print(f"10^20-combination grid refused in {time.perf_counter() - t:.4f} s")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        queued = queue_grid(reg, f"model=ae,qvae seed=0..{args.runs // 2 - 1}", confirmed=True)
        dt = time.perf_counter() - t
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"{len(queued):,} runs queued in {dt:.1f} s ({len(queued) / dt:,.0f} runs/s); "
              f"peak RSS grew by {(rss1 - rss0) / 1024:.0f} MB (to {rss1 / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
