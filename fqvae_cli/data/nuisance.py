"""Nuisance factors: factors a dataset's store holds (every image has a value for them, and the grid is
full over them) that the metrics do not score. SmallNORB's instance is one (disentanglement_lib
`data/ground_truth/norb.py`: `factor_sizes = [5, 10, 9, 18, 6]`, `latent_factor_indices = [0, 2, 3, 4]`).
meta.json lists them in `nuisance_factors`.

The reference draws the nuisance at random for each observation: the images for given latent factors are
drawn uniformly over the nuisance values. `complete_factors` draws them from a given random state (the
intervention scores' own, in the reference's order); `images_for_factors` does it seeded; `latent_space` and
`latent_codes` are the factors a metric scores. A uniform draw of distinct images over the whole grid
(fqvae_cli.metrics.codes.sample_indices) is already a uniform draw of latent factors with the nuisance
drawn uniformly, so only the columns scored and the intervention scores' factor -> image step change."""

from __future__ import annotations

from typing import Any

import numpy as np

from fqvae_cli.data.factors import FactorSpace


def nuisance_columns(ds: Any) -> list[int]:
    names = list(ds.space.names)
    return [names.index(n) for n in (ds.meta.get("nuisance_factors") or [])]


def latent_columns(ds: Any) -> list[int]:
    skip = set(nuisance_columns(ds))
    return [j for j in range(ds.space.n_factors) if j not in skip]


def latent_space(ds: Any) -> FactorSpace:
    """The factors a metric scores: the dataset's, less its nuisance factors."""
    keep = latent_columns(ds)
    return FactorSpace([ds.space.names[j] for j in keep], [ds.space.sizes[j] for j in keep],
                       [ds.space.values[j] for j in keep])


def latent_codes(ds: Any, indices: np.ndarray) -> np.ndarray:
    """The scored factor codes (n, F_latent) of the images at `indices`."""
    codes = np.asarray(ds.codes[np.asarray(indices, dtype=np.int64)], dtype=np.int64)
    if not nuisance_columns(ds):
        return codes  # the rows as they are (C order: the same bytes in factors.npy)
    return np.ascontiguousarray(codes[:, latent_columns(ds)])


def complete_factors(ds: Any, factors: np.ndarray, random_state: Any) -> np.ndarray:
    """Full-grid rows (n, F) for the latent `factors` (n, F_latent): each nuisance factor drawn uniformly
    and independently per row from `random_state`, nuisance columns in ascending order, one draw of n
    values each, as the reference's SplitDiscreteStateSpace.sample_all_factors draws them (a numpy
    RandomState gives its `randint` stream, a Generator its `integers`). Without nuisance factors the rows
    come back as they are and nothing is drawn."""
    factors = np.asarray(factors, dtype=np.int64)
    nuisance = nuisance_columns(ds)
    if not nuisance:
        return factors
    full = np.empty((factors.shape[0], ds.space.n_factors), dtype=np.int64)
    full[:, latent_columns(ds)] = factors
    for j in sorted(nuisance):
        size = int(ds.space.sizes[j])
        if isinstance(random_state, np.random.RandomState):
            full[:, j] = random_state.randint(size, size=factors.shape[0])
        else:
            full[:, j] = random_state.integers(0, size, size=factors.shape[0])
    return full


def images_for_factors(ds: Any, factors: np.ndarray, seed: int | np.random.Generator) -> np.ndarray:
    """Dataset indices of images showing the latent `factors` (n, F_latent), each nuisance value drawn
    uniformly and independently per row (seeded), as the reference's sample_observations_from_factors."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    factors = np.asarray(factors, dtype=np.int64)
    if not nuisance_columns(ds):
        return ds.space.ravel(factors)
    return ds.space.ravel(complete_factors(ds, factors, rng))
