"""Reconstruction error: per-pixel mean squared error, the MSE column of Table 1 (reported x 10^4).

The paper measures it with pixels on the [0, 1] scale. Models here see pixels shifted to
[-0.5, 0.5]; a shift cancels in x - x_hat, so passing both arrays on either scale gives the same
number, as long as the two arrays are on the SAME scale. Pixels on [0, 255] would give 255^2 times it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fqvae_cli.errors import DataError

# Table 1 prints MSE x 10^4.
REPORT_SCALE = 1e4

# Rows per chunk when accumulating, so a whole test split never needs a float64 copy in memory.
_CHUNK = 1024


def squared_error_sum(x: Any, x_hat: Any) -> tuple[float, int]:
    """(sum of squared differences, number of values), accumulated in float64; for summing over batches."""
    a = np.asarray(x)
    b = np.asarray(x_hat)
    if a.shape != b.shape:
        raise DataError(f"images and reconstructions have different shapes: {a.shape} and {b.shape}.")
    if a.size == 0:
        raise DataError("there are no pixels to compare.")
    if a.ndim == 0:
        a, b = a.reshape(1), b.reshape(1)
    total = 0.0
    for start in range(0, a.shape[0], _CHUNK):
        diff = a[start:start + _CHUNK].astype(np.float64) - b[start:start + _CHUNK].astype(np.float64)
        total += float(np.vdot(diff, diff))
    if not np.isfinite(total):
        raise DataError("images or reconstructions contain NaN or infinite values.")
    return total, int(a.size)


def mse_per_pixel(x: Any, x_hat: Any) -> float:
    """Mean over every pixel and channel of (x - x_hat)^2; both arrays on the same scale ([0,1] or
    [-0.5,0.5], which give the same value). Multiply by REPORT_SCALE for the Table 1 figure."""
    total, count = squared_error_sum(x, x_hat)
    return total / count
