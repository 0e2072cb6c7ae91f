"""Time every metric's protocol on Shapes3D-shaped codes, each against its straightforward serial version,
in one run.

Codes: d = 12 latents; discrete ones with values 0..63 and factors with the Shapes3D sizes (10, 10, 10, 8,
4, 15), latents that follow the factors with noise (like a trained quantized model), a few mixing two
factors and a few of noise alone; continuous ones alike.

- DCI 10k train / 5k test + InfoMEC 10k: serially (jobs=1) and with --jobs processes, then continuous codes
  (serially). Wall time is only meaningful on otherwise idle cores, so the serial runs also record the CPU
  seconds of each factor's classifier; from them the script prints what the same work takes on `--jobs`
  idle cores (the makespan of the largest-first schedule compute_dci uses, plus InfoMEC). That figure
  does not move when other processes share the machine.
- MIG (10k), SAP (10k / 5k), Modularity and Explicitness (10k / 5k) on the discrete and the continuous
  codes: serially (jobs=1: one classifier after the other, as the reference) and with --jobs workers over
  factors (threads for SAP, processes for Explicitness); the numbers must be identical. The serial runs
  also give the CPU seconds and, from each factor's, the time on --jobs idle cores, as for DCI. MIG has
  no per-factor fit (one pass).
- FactorVAE and BetaVAE scores through the quick profile's encoder (compact trunk, 32x32, untrained
  weights) on images made from the factors: one representation call per 64-image batch (the reference)
  against many batches per call, --points training points and half as many evaluation points (the
  published protocol has 10,000 and 5,000: its time scales linearly).
- --sap-dual: SAP also with the dual solver that scikit-learn < 1.5 chose by default (slow on raw
  integer codes), and how far its numbers are from the primal solver's.

- --lib WHEEL [--udr udr.py] [--tripod dci.py]: the scores added later against their references on the
  same codes (benchmarks/reference_agreement.py says where each reference comes from and how it is
  imported): IRS and the unsupervised scores on 10,000 rows (their gin configs), UDR over five models'
  codes of 1,000 rows (lasso and spearman: every pair, twice), and the random-forest DCI (fqvae with
  --jobs processes over factors, Tripod's forests with n_jobs=-1, as published) on the DCI rows.

    python benchmarks/metrics.py            # the full protocols
    python benchmarks/metrics.py --quick    # 2k / 1k / 2k and 60 intervention points, a smoke run
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fqvae_cli.metrics.base import discrete_mutual_info, histogram_discretize
from fqvae_cli.metrics.beta_vae import compute_beta_vae
from fqvae_cli.metrics.dci import compute_dci
from fqvae_cli.metrics.factor_vae import compute_factor_vae
from fqvae_cli.metrics.infomec import compute_infomec
from fqvae_cli.metrics.mig import compute_mig
from fqvae_cli.metrics.modularity import compute_modularity
from fqvae_cli.metrics.sap import compute_sap, top_two_gap

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


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def cpu_timed(fn, *args, **kwargs):
    """(wall seconds, CPU seconds of this process, result): for serial runs, the CPU time is the work."""
    c0 = time.process_time()
    wall, out = timed(fn, *args, **kwargs)
    return wall, time.process_time() - c0, out


def sap_dual_solver(z_train, s_train, z_test, s_test) -> np.ndarray:
    """The SAP score matrix with the dual solver scikit-learn < 1.5 picked for LinearSVC by default."""
    import warnings

    from sklearn.svm import LinearSVC

    m = np.zeros((z_train.shape[1], s_train.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(s_train.shape[1]):
            for i in range(z_train.shape[1]):
                svm = LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=0)
                m[i, j] = np.mean(svm.fit(z_train[:, [i]], s_train[:, j]).predict(z_test[:, [i]]) == s_test[:, j])
    return m


def array_metrics(label: str, codes: np.ndarray, factors: np.ndarray, *, jobs: int, n_train: int, n_test: int,
                  sap_dual: bool) -> None:
    """MIG, SAP, Modularity/Explicitness: serial against `jobs` workers over factors, same codes."""
    rows = (codes[:n_train], factors[:n_train], codes[n_train:n_train + n_test], factors[n_train:n_train + n_test])
    t, mig = timed(compute_mig, codes[:n_train], factors[:n_train])
    print(f"{label:<24} MIG {mig.mig:.3f}: {t:5.2f} s (one pass, nothing per factor to parallelise)", flush=True)
    clock = CpuClock()
    t1, c1, serial = cpu_timed(compute_sap, *rows, jobs=1, progress=clock)
    t2, parallel = timed(compute_sap, *rows, jobs=jobs)
    same = np.array_equal(serial.score_matrix, parallel.score_matrix)
    print(f"{'':<24} SAP {serial.sap:.3f}: serial {t1:5.1f} s ({c1:.1f} CPU s; on {jobs} idle cores "
          f"{makespan(clock.per_factor(), jobs):.1f} s), jobs={jobs} threads {t2:5.1f} s ({t1 / t2:.2f}x); "
          f"identical: {same}", flush=True)
    if sap_dual:
        t3, matrix = timed(sap_dual_solver, *rows)
        print(f"{'':<24} SAP with the dual solver {top_two_gap(matrix)[0]:.4f}: {t3:5.1f} s; largest accuracy "
              f"difference from the primal solver {np.abs(matrix - serial.score_matrix).max():.4f}", flush=True)
    clock = CpuClock()
    t1, c1, serial = cpu_timed(compute_modularity, *rows, jobs=1, progress=clock)
    t2, parallel = timed(compute_modularity, *rows, jobs=jobs)
    # Modularity's MI (before the first fit, so inside the first factor's CPU seconds) stays serial.
    c0 = time.process_time()
    discrete_mutual_info(histogram_discretize(rows[0]), rows[1])
    mi_cpu = time.process_time() - c0
    costs = clock.per_factor()
    idle = mi_cpu + makespan([costs[0] - mi_cpu, *costs[1:]], jobs)
    same = (serial.modularity == parallel.modularity
            and np.array_equal(serial.per_factor_explicitness, parallel.per_factor_explicitness))
    print(f"{'':<24} Modularity {serial.modularity:.3f}, Explicitness {serial.explicitness:.3f}: serial {t1:5.1f} s "
          f"({c1:.1f} CPU s; on {jobs} idle cores {idle:.1f} s), jobs={jobs} processes {t2:5.1f} s "
          f"({t1 / t2:.2f}x); identical: {same}", flush=True)


class ImageEncoder:
    """Factor combinations -> 32x32 RGB images (a fixed random projection of the one-hot factors) -> codes of
    the quick profile's FactorQVAE encoder (compact trunk, untrained weights, eval mode)."""

    def __init__(self, sizes: tuple[int, ...]):
        import torch

        from fqvae_cli.experiments import resolve_run_config
        from fqvae_cli.models.zoo import build_model

        cfg = resolve_run_config("factorqvae", "synth3d", "quick", 0, {})
        torch.manual_seed(0)
        self.model = build_model(cfg.model).eval()
        self.size = cfg.model.image_size
        self.offsets = np.cumsum([0, *sizes[:-1]])
        self.weights = np.random.default_rng(0).normal(0, 1, (sum(sizes), 3 * self.size ** 2)).astype(np.float32)

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        import torch

        pixels = np.zeros((len(factors), self.weights.shape[1]), dtype=np.float32)
        for j, offset in enumerate(self.offsets):  # one factor at a time: no (n, F, pixels) temporary
            pixels += self.weights[factors[:, j] + offset]
        x = torch.sigmoid(torch.from_numpy(pixels)) - 0.5
        x = x.reshape(len(factors), 3, self.size, self.size)
        with torch.no_grad():
            return np.concatenate([self.model.encode_codes(x[i:i + 1024]).numpy() for i in range(0, len(x), 1024)])


def intervention_metrics(points: int) -> None:
    """FactorVAE and BetaVAE scores: one call per 64-image batch (the reference) against many per call."""
    encoder = ImageEncoder(SIZES)
    sizes = dict(batch_size=64, num_train=points, num_eval=points // 2)
    images = {"FactorVAE": (points + points // 2) * 64 + 10_000, "BetaVAE": (points + points // 2) * 128}
    for name, fn, extra in (("FactorVAE", compute_factor_vae, {"num_variance_estimate": 10_000}),
                            ("BetaVAE", compute_beta_vae, {})):
        t1, c1, serial = cpu_timed(fn, SIZES, encoder, np.random.RandomState(0), images_per_call=64, **sizes,
                                   **extra)
        t2, c2, batched = cpu_timed(fn, SIZES, encoder, np.random.RandomState(0), **sizes, **extra)
        print(f"{name + ' score':<24} {serial.score:.3f} ({points} / {points // 2} points, {images[name]:,} images): "
              f"one call per batch {t1:5.1f} s ({c1:.1f} CPU s), batched {t2:5.1f} s ({c2:.1f} CPU s) "
              f"({t1 / t2:.2f}x); same score: {serial.score == batched.score}", flush=True)


def added_scores(args, zd: np.ndarray, zc: np.ndarray, factors: np.ndarray, n_train: int, n_test: int) -> None:
    """fqvae against the reference, wall seconds each, on the same codes (same numbers: see
    benchmarks/reference_agreement.py)."""
    from pathlib import Path

    from reference_agreement import fixed_rows, load_file_module, load_reference, load_tripod_dci, reference_udr

    from fqvae_cli.metrics.irs import compute_irs
    from fqvae_cli.metrics.unsupervised import compute_unsupervised

    ref = load_reference(Path(args.lib))
    n = 10_000 if not args.quick else 2_000
    print(f"\n{'score':<48} {'fqvae s':>9} {'reference s':>12} {'speed-up':>9}", flush=True)

    def line(label, ours, theirs):
        print(f"{label:<48} {ours:9.2f} {theirs:12.2f} {theirs / ours:8.1f}x", flush=True)

    for kind, z in (("discrete", zd), ("continuous", zc)):
        ours, _ = timed(compute_irs, z[:n], factors[:n])
        theirs, _ = timed(ref.irs.compute_irs, fixed_rows(ref, factors), lambda r, z=z: z[r],
                          np.random.RandomState(0), num_train=n, batch_size=16)
        line(f"IRS ({kind}, {n:,} rows)", ours, theirs)
        ours, _ = timed(compute_unsupervised, z[:n])
        theirs, _ = timed(ref.unsupervised_metrics.unsupervised_metrics, fixed_rows(ref, factors),
                          lambda r, z=z: z[r], np.random.RandomState(0), num_train=n, batch_size=16)
        line(f"unsupervised scores ({kind}, {n:,} rows)", ours, theirs)
    if args.udr:
        udr = load_file_module("dlib_udr", Path(args.udr))
        rng = np.random.default_rng(3)
        models = [zc[:1000, rng.permutation(zc.shape[1])] + rng.normal(0, 0.05, (1000, zc.shape[1]))
                  for _ in range(5)]
        for method in ("lasso", "spearman"):
            from fqvae_cli.metrics.udr import compute_udr

            ours, _ = timed(compute_udr, models, None, method=method)
            theirs, _ = timed(reference_udr, udr, models, [None] * 5, method)
            line(f"UDR {method} (5 models, 1,000 rows)", ours, theirs)
    if args.tripod:
        tripod = load_tripod_dci(Path(args.tripod))
        x, y = zc[:n_train + n_test], factors[:n_train + n_test]
        ours, _ = timed(compute_dci, x[:n_train], y[:n_train], x[n_train:], y[n_train:], estimator="rf",
                        jobs=args.jobs)
        theirs, _ = timed(tripod.compute_relative_importance_matrix, x, y)
        line(f"DCI rf (continuous, {n_train + n_test:,} rows, jobs={args.jobs})", ours, theirs)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k/1k/2k samples instead of 10k/5k/10k")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the parallel runs")
    parser.add_argument("--no-continuous", action="store_true", help="skip the continuous codes")
    parser.add_argument("--no-dci", action="store_true", help="skip DCI and InfoMEC")
    parser.add_argument("--points", type=int, default=None,
                        help="FactorVAE/BetaVAE training points (evaluation: half) [default 200; --quick 60]")
    parser.add_argument("--sap-dual", action="store_true", help="also time SAP with the dual solver")
    parser.add_argument("--lib", default=None, help="disentanglement_lib 1.5 wheel: time the added scores")
    parser.add_argument("--udr", default=None, help="disentanglement_lib's udr.py (with --lib)")
    parser.add_argument("--tripod", default=None, help="Tripod's disentangle/metrics/dci.py (with --lib)")
    parser.add_argument("--only-added", action="store_true", help="with --lib: only the added scores")
    args = parser.parse_args()
    n_train, n_test, n_info = (2000, 1000, 2000) if args.quick else (10_000, 5_000, 10_000)
    points = args.points or (60 if args.quick else 200)

    rng = np.random.default_rng(0)
    n = max(n_train + n_test, n_info)
    factors = np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)
    zd = discrete_codes(factors, rng)
    zc = continuous_codes(factors, rng)
    sizes = dict(n_train=n_train, n_test=n_test, n_info=n_info)
    print(f"{os.cpu_count()} CPUs ({cpu_name()}); DCI {n_train}/{n_test}, InfoMEC {n_info}, MIG {n_train}, SAP and "
          f"Modularity {n_train}/{n_test}; factor sizes {SIZES}, d = {N_LATENTS}, codes 0..{N_VALUES - 1}", flush=True)

    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes on these cores slow the wall times)",
          flush=True)
    if args.lib:
        added_scores(args, zd, zc, factors, n_train, n_test)
        if args.only_added:
            return
    if not args.no_dci:
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
    array_metrics("discrete codes", zd, factors, jobs=args.jobs, n_train=n_train, n_test=n_test,
                  sap_dual=args.sap_dual)
    if not args.no_continuous:
        array_metrics("continuous codes", zc, factors, jobs=args.jobs, n_train=n_train, n_test=n_test,
                      sap_dual=args.sap_dual)
    intervention_metrics(points)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
