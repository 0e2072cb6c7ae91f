"""Evaluate a trained run with a published protocol and record the numbers in the registry.

checkpoint (sha256 verified) + dataset -> factor combinations drawn uniformly from the whole grid
(seeded; as many as the protocol's metrics of codes take) -> eval-mode codes -> `score_all` with the
chosen metrics (the intervention scores encode their own batches through the dataset and the encoder)
-> registry metrics with the protocol name and the provenance of this process (machine, kernels,
threads, versions); importance and NMI matrices as artifacts; MSE on the held-out test split."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli import console, provenance
from fqvae_cli.config import build_run_config
from fqvae_cli.data.identity import require_same_dataset
from fqvae_cli.data.store import open_dataset
from fqvae_cli.errors import CheckpointError, ConfigError, NotFoundError
from fqvae_cli.experiments import load_experiments
from fqvae_cli.io import atomic_path, sha256_file
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
    reconstruction_mse,
    sample_indices,
)
from fqvae_cli.models.zoo import build_model
from fqvae_cli.registry.store import run_dir
from fqvae_cli.trackers.sync import send_evaluation
from fqvae_cli.training.checkpoint import load_weights


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


def load_run(reg: Any, ref: str, device: Any, *, step: int | None = None, need_data: bool = True) -> LoadedRun:
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


def evaluate_run(reg: Any, ref: str, device: Any, *, protocol: str = "paper", step: int | None = None,
                 jobs: int = 1, seed: int | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
                 show_progress: bool = True) -> dict:
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
        factors = np.asarray(ds.codes[indices], dtype=np.int64)
        with _maybe_progress(show_progress, "encode", n, "img") as bar:
            codes = encode_codes(model, ds, indices, device, batch_size=cfg.eval.batch_size, seed=seed,
                                 progress=bar)
    represent = FactorEncoder(model, ds, device, batch_size=cfg.eval.batch_size, seed=seed)
    with _maybe_progress(show_progress, "metrics", score_steps(ds.space.n_factors, metrics), "step") as bar:
        scores = score_all(codes, factors, discrete=model.bottleneck.discrete, sizes=sizes, metrics=metrics,
                           seed=seed, jobs=jobs, n_neighbors=cfg.eval.n_neighbors, progress=bar,
                           factor_sizes=ds.space.sizes, represent=represent)

    test_idx = held_out_subset(ds, cfg.eval.mse_images, seed)
    with _maybe_progress(show_progress, "MSE (test split)", len(test_idx), "img") as bar:
        mse = reconstruction_mse(model, ds, test_idx, device, batch_size=cfg.eval.batch_size, progress=bar)

    results = {k: float(v) for k, v in scores.values.items()} | {"mse": mse}
    # Each metric row is written here, with the protocol and the provenance that produced it.
    rows = [(k, v, loaded.step, "test" if k == "mse" else "eval", protocol) for k, v in results.items()]
    reg.log_metrics(loaded.run.id, rows, provenance=origin)
    send_evaluation(reg, loaded.run, cfg.train.tracker_names(), rows)  # the run's trackers (train.trackers)
    folder = run_dir(loaded.run) / "matrices" / protocol
    matrices = [("importance", "dci", "importance"), ("nmi", "infomec", "nmi")]
    for name, metric, attr in matrices:
        if metric not in scores.details:
            continue
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
