"""Evaluate a trained run with a published protocol and record the numbers in the registry.

checkpoint (sha256 verified) + dataset -> factor combinations drawn uniformly from the whole grid
(seeded; as many as the protocol's metrics of codes take; on a dataset with nuisance factors the metrics
see the latent factors only, and the intervention scores draw the nuisance values of each batch as the
reference does, fqvae_cli.data.nuisance) -> eval-mode codes -> `score_all` with the
chosen metrics (the intervention scores encode their own batches through the dataset and the encoder)
-> registry metrics with the protocol name and the provenance of this process (machine, kernels,
threads, versions); importance and NMI matrices as artifacts; MSE on the held-out test split.

`encode_run` / `write_encoding`: a run's representation as plain arrays, for any tool to score: exactly
the rows `evaluate` scores (as many as the protocol's largest metric of codes takes, fqvae_cli.metrics.protocol_rows).

DIR/codes.npy    (n, d) codes: int64 codebook indices for discrete models, float64 values otherwise
DIR/factors.npy  (n, f) int64 factor codes of the same images (the latent factors: a dataset's nuisance
                 factors, SmallNORB's instance, are left out, as every metric leaves them out)
DIR/indices.npy  (n,) dataset rows
DIR/meta.json    the run, checkpoint step, protocol and its sizes, seed, factor names and sizes, whether
                 the codes are discrete and the kNN neighbours, so `fqvae score` reproduces `evaluate`
                 with no options.

`udr_cell`: UDR across the seeds of a run's setting (metrics/udr.py), recorded per run."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fqvae_cli import console, provenance
from fqvae_cli.config import build_run_config
from fqvae_cli.data.identity import require_same_dataset
from fqvae_cli.data.nuisance import latent_codes, latent_space, nuisance_columns
from fqvae_cli.data.store import open_dataset
from fqvae_cli.errors import CheckpointError, ConfigError, DataError, NotFoundError, UsageError
from fqvae_cli.experiments import load_experiments
from fqvae_cli.files import atomic_path, atomic_write_json, sha256_file
from fqvae_cli.metrics import (
    DEFAULT_METRICS,
    parse_metrics,
    protocol_rows,
    require_sizes,
    rows_needed,
    score_all,
    score_steps,
)
from fqvae_cli.metrics.codes import (
    FactorEncoder,
    encode_codes,
    held_out_subset,
    latent_kl,
    reconstruction_mse,
    sample_indices,
)
from fqvae_cli.models.zoo import build_model
from fqvae_cli.registry.store import run_dir
from fqvae_cli.training.checkpoint import load_weights

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


@dataclass
class LoadedRun:
    run: Any
    cfg: Any  # RunConfig
    model: Any
    step: int
    dataset: Any


def protocol_sizes(name: str) -> dict:
    protocols = load_experiments().get("protocols", {}) or {}
    if name not in protocols:
        raise ConfigError(f"unknown protocol '{name}'; choose one of: {', '.join(protocols)}.")
    return dict(protocols[name])


def load_run(reg: Registry, ref: str, device: Any, *, step: int | None = None, need_data: bool = True) -> LoadedRun:
    """The run's model with the weights of its newest (or the given) checkpoint, hash-verified."""
    run = reg.get_run(ref)
    cfg = build_run_config(run.config)
    ckpts = {a.step: a for a in reg.artifacts(run.id, kind="checkpoint")}
    if not ckpts:
        raise CheckpointError(f"run {run.short_id} has no checkpoint (status: {run.status}).")
    if step is None:
        step = max(ckpts)
    elif step not in ckpts:
        raise NotFoundError(f"run {run.short_id} has no checkpoint at step {step}; it has: "
                            f"{', '.join(str(s) for s in sorted(ckpts))}.")
    model = build_model(cfg.model).to(device)
    load_weights(Path(ckpts[step].path), model, ckpts[step].sha256, device=device)
    model.eval()
    ds = None
    if need_data:
        ds = open_dataset(cfg.dataset)
        require_same_dataset(run, ds, "evaluate or draw")  # numbers only on the data the run trained on
    return LoadedRun(run, cfg, model, step, ds)


def evaluate_run(reg: Registry, ref: str, device: Any, *, protocol: str = "paper", step: int | None = None,
                 jobs: int = 1, seed: int | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
                 show_progress: bool = True, dci_estimator: str = "gbt") -> dict:
    """Compute and record the chosen metrics (default: the paper's DCI and InfoMEC) and the MSE of one run
    with a protocol's sizes. Returns the numbers, as recorded."""
    metrics = parse_metrics(list(metrics))
    sizes = protocol_sizes(protocol)
    require_sizes(sizes, metrics, protocol)
    loaded = load_run(reg, ref, device, step=step)
    cfg, ds, model = loaded.cfg, loaded.dataset, loaded.model
    origin = provenance.collect(device)  # what computes these numbers, recorded with each of them
    seed = cfg.eval.seed if seed is None else seed
    n = protocol_rows(sizes)  # the same rows whichever metrics are asked, as `fqvae encode` writes them
    codes = factors = None
    if rows_needed(sizes, metrics):
        indices = sample_indices(ds, n, seed, what=f"the {protocol} protocol")
        factors = latent_codes(ds, indices)
        with _maybe_progress(show_progress, "encode", n, "img") as bar:
            codes = encode_codes(model, ds, indices, device, batch_size=cfg.eval.batch_size, seed=seed,
                                 progress=bar)
    represent = FactorEncoder(model, ds, device, batch_size=cfg.eval.batch_size, seed=seed)
    scored = latent_space(ds)  # the factors the metrics score: a nuisance factor is drawn, never scored
    with _maybe_progress(show_progress, "metrics", score_steps(scored.n_factors, metrics), "step") as bar:
        scores = score_all(codes, factors, discrete=model.bottleneck.discrete, sizes=sizes, metrics=metrics,
                           seed=seed, jobs=jobs, n_neighbors=cfg.eval.n_neighbors, progress=bar,
                           factor_sizes=scored.sizes, represent=represent, dci_estimator=dci_estimator)

    test_idx = held_out_subset(ds, cfg.eval.mse_images, seed)
    with _maybe_progress(show_progress, "MSE (test split)", len(test_idx), "img") as bar:
        mse = reconstruction_mse(model, ds, test_idx, device, batch_size=cfg.eval.batch_size, progress=bar)

    if not np.isfinite(mse):
        raise DataError(f"run {loaded.run.short_id}'s reconstruction MSE is {mse} at step {loaded.step} (its weights "
                        "hold NaN or infinity?); nothing was recorded.")
    results = {k: float(v) for k, v in scores.values.items()} | {"mse": mse}
    # Each metric row is written here, with the protocol and the provenance that produced it.
    reg.log_metrics(loaded.run.id, [(k, v, loaded.step, "test" if k == "mse" else "eval", protocol)
                                for k, v in results.items()], provenance=origin)
    folder = run_dir(loaded.run) / "matrices" / protocol
    matrices = [("importance", "dci", "importance"), ("nmi", "infomec", "nmi")]
    for name, metric, attr in matrices:
        if metric not in scores.details or (metric == "dci" and dci_estimator != "gbt"):
            continue  # the importance artifact is gbt's, the one the figures draw
        path = folder / f"{name}_step{loaded.step}.npy"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(getattr(scores.details[metric], attr), dtype=np.float64))
        reg.add_artifact(loaded.run.id, kind=f"matrix_{name}", path=str(path), bytes=path.stat().st_size,
                         sha256=sha256_file(path), step=loaded.step)
    if show_progress:
        console.info(f"evaluated run [bold]{loaded.run.short_id}[/bold] at step {loaded.step} ({protocol} protocol: "
                     f"{', '.join(metrics)})")
    return results


def _maybe_progress(show: bool, description: str, total: int, unit: str):
    # Without a display the metric functions get progress=None, which they accept.
    return console.progress(description, total, unit=unit) if show else nullcontext(None)


def udr_cell(reg: Registry, ref: str, device: Any, *, protocol: str = "paper", points: int = 1000,
             method: str = "lasso",
             seed: int | None = None, show_progress: bool = True) -> dict[str, float]:
    """UDR (metrics/udr.py) of every finished run of RUN's cell (its training setup, any seed; the newest run
    of each seed) against the others, on the same `points` images: the first rows of the protocol's draw.
    Records `udr_<method>` per run under the protocol and returns {short id: score}."""
    from fqvae_cli.metrics.base import as_codes
    from fqvae_cli.metrics.udr import METHODS, compute_udr
    from fqvae_cli.runs.cell_sources import one_per_seed, training_setup

    if method not in METHODS:
        raise UsageError(f"unknown UDR method '{method}'; choose from: {', '.join(METHODS)}.")
    if points < 2:
        raise UsageError(f"--points must be at least 2, got {points}.")
    first = reg.get_run(ref)
    setup = training_setup(first.config)
    cell = one_per_seed([r for r in reg.find_runs(model=first.model, dataset=first.dataset, profile=first.profile,
                                                  status="finished") if training_setup(r.config) == setup])
    if len(cell) < 2:
        raise DataError(f"UDR scores a run by its agreement with the other seeds of its setting, and run "
                        f"{first.short_id}'s setting has {len(cell)} finished run; train another seed first.")
    sizes = protocol_sizes(protocol)
    codes, kls, loaded = [], [], []
    for run in cell:
        one = load_run(reg, run.id, device)
        draw_seed = one.cfg.eval.seed if seed is None else seed
        indices = sample_indices(one.dataset, max(protocol_rows(sizes), points), draw_seed,
                                 what=f"the {protocol} protocol")[:points]
        codes.append(as_codes(encode_codes(one.model, one.dataset, indices, device, seed=draw_seed,
                                           batch_size=one.cfg.eval.batch_size), f"run {run.short_id}'s codes"))
        kls.append(latent_kl(one.model, one.dataset, indices, device, batch_size=one.cfg.eval.batch_size))
        loaded.append(one)
    origin = provenance.collect(device)
    result = compute_udr(codes, kls, method=method)
    out = {}
    for one, score in zip(loaded, result.scores, strict=True):
        reg.log_metrics(one.run.id, [(f"udr_{method}", float(score), one.step, "eval", protocol)], provenance=origin)
        out[one.run.short_id] = float(score)
    if show_progress:
        console.info(f"UDR ({method}) of {len(cell)} runs of run {first.short_id}'s setting, on {points} images")
    return out



@dataclass
class Encoding:
    codes: np.ndarray
    factors: np.ndarray
    indices: np.ndarray
    meta: dict


def encode_run(reg: Registry, ref: str, device: Any, *, protocol: str | None = "paper", n: int | None = None,
               seed: int | None = None, step: int | None = None) -> Encoding:
    """The codes of `n` (or the protocol's number of) uniformly drawn factor combinations, drawn and
    encoded as evaluate_run draws and encodes them for the same seed."""
    if (protocol is None) == (n is None):
        raise UsageError("give either a protocol or a number of rows, not both.")
    if n is not None and n < 1:
        raise UsageError(f"the number of rows must be at least 1, got {n}.")
    sizes = protocol_sizes(protocol) if protocol is not None else None
    loaded = load_run(reg, ref, device, step=step)
    cfg, ds = loaded.cfg, loaded.dataset
    seed = cfg.eval.seed if seed is None else seed
    if seed < 0:
        raise UsageError(f"the seed must be non-negative, got {seed}.")
    rows = n if sizes is None else protocol_rows(sizes)
    indices = sample_indices(ds, rows, seed, what=f"the {protocol} protocol" if sizes is not None else f"--n {n}")
    factors = latent_codes(ds, indices)
    scored = latent_space(ds)
    codes = encode_codes(loaded.model, ds, indices, device, batch_size=cfg.eval.batch_size, seed=seed)
    meta = {"run": loaded.run.id, "short_id": loaded.run.short_id, "model": cfg.model.name, "dataset": cfg.dataset,
            "step": loaded.step, "protocol": protocol, "protocol_sizes": sizes, "seed": seed, "rows": rows,
            "factor_names": list(scored.names), "factor_sizes": [int(s) for s in scored.sizes],
            "discrete": bool(loaded.model.bottleneck.discrete), "n_neighbors": cfg.eval.n_neighbors,
            "dataset_fingerprint": loaded.run.dataset_fingerprint}
    if nuisance_columns(ds):  # factors.npy leaves them out (a dataset without one: meta as before)
        meta["nuisance_factors"] = [ds.space.names[j] for j in nuisance_columns(ds)]
    return Encoding(codes, factors, indices, meta)


def write_encoding(enc: Encoding, folder: Path) -> list[Path]:
    """Write the four files (each atomically); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, array in (("codes", enc.codes), ("factors", enc.factors), ("indices", enc.indices)):
        path = folder / f"{name}.npy"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        written.append(path)
    atomic_write_json(folder / "meta.json", enc.meta)
    return written + [folder / "meta.json"]
