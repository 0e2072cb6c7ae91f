"""The histogram discretiser and the plug-in mutual information that MIG and Modularity share, as
disentanglement_lib computes them (evaluation/metrics/utils.py: `_histogram_discretize`,
`discrete_mutual_info`, `discrete_entropy`).

Each latent is cut into `num_bins` equal-width bins over its own [min, max] on the rows given, with
numpy's histogram edges: a value's bin is `np.digitize(value, edges[:-1])`, 1..num_bins, so the maximum
lands in the last bin. Integer codes go through the same discretiser: a latent with fewer than
num_bins + 1 distinct consecutive values keeps one bin per value, a wider one has neighbouring values
merged (0..39 into 20 bins of two values each), exactly as the reference does with the same array. A
constant latent falls in a single bin (no information).

MI is sklearn's `mutual_info_score` (nats) between each binned latent and each factor's codes; the
factor entropy is `mutual_info_score(s, s)`."""

from __future__ import annotations

from typing import Any

import numpy as np

from fqvae_cli.errors import DataError

# disentanglement_lib's gin configs: discretizer.num_bins = 20 (MIG and Modularity).
NUM_BINS = 20


def histogram_discretize(codes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin index 1..num_bins of every entry of codes (samples x latents), per latent (column)."""
    if num_bins < 1:
        raise DataError(f"the number of bins must be at least 1, got {num_bins}.")
    out = np.empty(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        column = codes[:, i]
        edges = np.histogram_bin_edges(column, num_bins)
        out[:, i] = np.digitize(column, edges[:-1])
    return out


def discrete_mutual_info(binned: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """MI[i, j] = I(z_i; s_j) in nats (latents x factors), plug-in estimate on the rows given."""
    from sklearn.metrics import mutual_info_score

    mi = np.empty((binned.shape[1], factors.shape[1]))
    for i in range(binned.shape[1]):
        for j in range(factors.shape[1]):
            mi[i, j] = mutual_info_score(factors[:, j], binned[:, i])
    return mi


def discrete_entropy(factors: np.ndarray, what: str = "rows") -> np.ndarray:
    """H(s_j) in nats of each factor column; a factor with a single value is refused (its entropy is zero
    and every normalised score would divide by it)."""
    from sklearn.metrics import mutual_info_score

    h = np.empty(factors.shape[1])
    for j in range(factors.shape[1]):
        col = factors[:, j]
        if (col == col[0]).all():
            raise DataError(f"factor {j} takes a single value ({col[0]}) in the {len(col)} {what}; "
                            "every factor needs at least two values.")
        h[j] = mutual_info_score(col, col)
    return h


def require_latents(codes: Any, at_least: int, metric: str, why: str) -> None:
    n = np.asarray(codes).shape[1]
    if n < at_least:
        raise DataError(f"{metric} {why}, so it needs at least {at_least} latents; the codes have {n}.")
