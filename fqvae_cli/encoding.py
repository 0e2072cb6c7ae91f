"""A run's representation as plain arrays, for any tool to score: exactly the rows `evaluate` scores
(as many as the protocol's largest metric of codes takes, fqvae_cli.metrics.protocol_rows).

DIR/codes.npy    (n, d) codes: int64 codebook indices for discrete models, float64 values otherwise
DIR/factors.npy  (n, f) int64 factor codes of the same images
DIR/indices.npy  (n,) dataset rows
DIR/meta.json    the run, checkpoint step, protocol and its sizes, seed, factor names and sizes, whether
                 the codes are discrete and the kNN neighbours, so `fqvae score` reproduces `evaluate`
                 with no options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli.errors import UsageError
from fqvae_cli.evaluation import load_run, protocol_sizes
from fqvae_cli.io import atomic_path, atomic_write_json
from fqvae_cli.metrics import protocol_rows
from fqvae_cli.metrics.codes import encode_codes, sample_indices


@dataclass
class Encoding:
    codes: np.ndarray
    factors: np.ndarray
    indices: np.ndarray
    meta: dict


def encode_run(reg: Any, ref: str, device: Any, *, protocol: str | None = "paper", n: int | None = None,
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
    factors = np.asarray(ds.codes[indices], dtype=np.int64)
    codes = encode_codes(loaded.model, ds, indices, device, batch_size=cfg.eval.batch_size, seed=seed)
    meta = {"run": loaded.run.id, "short_id": loaded.run.short_id, "model": cfg.model.name, "dataset": cfg.dataset,
            "step": loaded.step, "protocol": protocol, "protocol_sizes": sizes, "seed": seed, "rows": rows,
            "factor_names": list(ds.space.names), "factor_sizes": [int(s) for s in ds.space.sizes],
            "discrete": bool(loaded.model.bottleneck.discrete), "n_neighbors": cfg.eval.n_neighbors,
            "dataset_fingerprint": loaded.run.dataset_fingerprint}
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
