"""Time the full metric protocol (DCI 10k train / 5k test + InfoMEC 10k) on Shapes3D-shaped codes.

Discrete codes: d = 12 latents with values 0..63, factors with the Shapes3D sizes (10, 10, 10, 8, 4, 15),
latents that follow the factors with noise (like a trained quantized model), a few mixing two factors
and a few of noise alone. Scored serially (jobs=1) and with jobs=2; then continuous codes (serially).
Prints wall seconds per part and the serial / parallel ratio, measured in this one run.

Wall time is only meaningful on otherwise idle cores, so the serial runs also record the CPU seconds of
each factor's classifier; from them the script prints what the same work takes on `--jobs` idle cores
(the makespan of the largest-first schedule compute_dci uses, plus InfoMEC). That figure does not move
when other processes share the machine.

    python benchmarks/metrics.py            # the full protocol
    python benchmarks/metrics.py --quick    # 2k / 1k / 2k, a smoke run
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fqvae_cli.metrics.dci import compute_dci
from fqvae_cli.metrics.infomec import compute_infomec

SIZES = (10, 10, 10, 8, 4, 15)  # Shapes3D: floor hue, wall hue, object hue, scale, shape, orientation
N_LATENTS = 12
N_VALUES = 64


def discrete_codes(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(factors)
    z = np.empty((n, N_LATENTS), dtype=np.int64)
    for j, size in enumerate(SIZES):
        # Each factor value owns a few of the 64 codes; 15% of the samples land on a random code.
        owner = rng.permutation(N_VALUES)[: size * 4].reshape(size, 4)
        z[:, j] = owner[factors[:, j], rng.integers(0, 4, n)]
        z[:, j] = np.where(rng.random(n) < 0.15, rng.integers(0, N_VALUES, n), z[:, j])
    # Three latents mix two factors each, three carry noise only.
    for k, (a, b) in enumerate([(0, 3), (1, 4), (2, 5)]):
        z[:, 6 + k] = (factors[:, a] * 7 + factors[:, b] * 3 + rng.integers(0, 2, n)) % N_VALUES
    z[:, 9:] = rng.integers(0, N_VALUES, (n, 3))
    return z


def continuous_codes(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(factors)
    scaled = factors / (np.array(SIZES) - 1)
    z = rng.normal(0.0, 1.0, (n, N_LATENTS))
    z[:, :6] = scaled + rng.normal(0.0, 0.05, (n, 6))
    z[:, 6:9] = scaled[:, :3] - scaled[:, 3:] + rng.normal(0.0, 0.05, (n, 3))
    return z


class CpuClock:
    """A progress handle that records the process CPU time at each finished factor (serial runs only:
    the work of worker processes is not counted in this process)."""

    def __init__(self) -> None:
        self.marks = [time.process_time()]

    def advance(self, n: int = 1) -> None:
        self.marks.append(time.process_time())

    def status(self, text: str) -> None:
        pass

    def per_factor(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def makespan(costs: list[float], workers: int) -> float:
    """Finish time when each task, in the given order, goes to the first free worker."""
    loads = [0.0] * workers
    for c in costs:
        loads[loads.index(min(loads))] += c
    return max(loads)


def timed_protocol(codes: np.ndarray, factors: np.ndarray, *, discrete: bool, jobs: int,
                   n_train: int, n_test: int, n_info: int) -> dict:
    clock = CpuClock() if jobs == 1 else None
    t0, c0 = time.perf_counter(), time.process_time()
    dci = compute_dci(codes[:n_train], factors[:n_train], codes[n_train:n_train + n_test],
                      factors[n_train:n_train + n_test], jobs=jobs, seed=0, progress=clock)
    t1, c1 = time.perf_counter(), time.process_time()
    info = compute_infomec(codes[:n_info], factors[:n_info], discrete=discrete, seed=0)
    t2, c2 = time.perf_counter(), time.process_time()
    return {"dci_s": t1 - t0, "infomec_s": t2 - t1, "total_s": t2 - t0, "dci": dci, "info": info,
            "dci_cpu": c1 - c0, "infomec_cpu": c2 - c1,
            "factor_cpu": clock.per_factor() if clock else None}


def report(label: str, r: dict, workers: int) -> None:
    d, i = r["dci"], r["info"]
    print(f"{label:<24} wall {r['total_s']:6.1f} s  (DCI {r['dci_s']:5.1f} s, InfoMEC {r['infomec_s']:4.1f} s)  "
          f"D {d.d:.3f} I {d.i:.3f} C {d.c:.3f}  InfoM {i.infom:.3f} InfoE {i.infoe:.3f} InfoC {i.infoc:.3f}",
          flush=True)
    if r["factor_cpu"] is not None:
        costs = r["factor_cpu"]  # in the order compute_dci fits them: most classes first
        print(f"{'':<24} CPU  {r['dci_cpu'] + r['infomec_cpu']:6.1f} s  (DCI {r['dci_cpu']:5.1f} s, "
              f"InfoMEC {r['infomec_cpu']:4.1f} s); per factor, largest first: "
              + ", ".join(f"{c:.1f}" for c in costs), flush=True)
        print(f"{'':<24} on {workers} idle cores: {makespan(costs, workers) + r['infomec_cpu']:.1f} s "
              f"(largest-first schedule of the per-factor CPU seconds, plus InfoMEC)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k/1k/2k samples instead of 10k/5k/10k")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the parallel runs")
    parser.add_argument("--no-continuous", action="store_true", help="skip the continuous codes")
    args = parser.parse_args()
    n_train, n_test, n_info = (2000, 1000, 2000) if args.quick else (10_000, 5_000, 10_000)

    rng = np.random.default_rng(0)
    n = max(n_train + n_test, n_info)
    factors = np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)
    zd = discrete_codes(factors, rng)
    zc = continuous_codes(factors, rng)
    sizes = dict(n_train=n_train, n_test=n_test, n_info=n_info)
    print(f"{os.cpu_count()} CPUs; DCI {n_train}/{n_test}, InfoMEC {n_info}; factor sizes {SIZES}, "
          f"d = {N_LATENTS}, codes 0..{N_VALUES - 1}", flush=True)

    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes on these cores slow the wall times)",
          flush=True)
    serial = timed_protocol(zd, factors, discrete=True, jobs=1, **sizes)
    report("discrete, jobs=1", serial, args.jobs)
    parallel = timed_protocol(zd, factors, discrete=True, jobs=args.jobs, **sizes)
    report(f"discrete, jobs={args.jobs}", parallel, args.jobs)
    same = (np.array_equal(serial["dci"].importance, parallel["dci"].importance)
            and np.array_equal(serial["dci"].per_factor_test_acc, parallel["dci"].per_factor_test_acc))
    print(f"{'':<24} serial / parallel wall: total {serial['total_s'] / parallel['total_s']:.2f}x, "
          f"DCI {serial['dci_s'] / parallel['dci_s']:.2f}x; identical importance and accuracies: {same}")
    if not args.no_continuous:
        cont = timed_protocol(zc, factors, discrete=False, jobs=1, **sizes)
        report("continuous, jobs=1", cont, args.jobs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
