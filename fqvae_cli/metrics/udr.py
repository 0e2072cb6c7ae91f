"""UDR, unsupervised disentanglement ranking (Duan et al., ICLR 2020), as disentanglement_lib computes it
(evaluation/udr/metrics/udr.py `compute_udr_sklearn`; its configs: kl_filter_threshold 0.01, filter_low_kl,
1,000 data points), on the codes of several models of one setting for the same images.

Each model's codes are standardized (StandardScaler), latents whose mean KL to the prior is at most 0.01
are zeroed and left out of the score; then for every ordered pair of models (i, j), i != j:

    R        = |Lasso(alpha=0.1) coefficients| predicting model j's codes from model i's   (lasso)
             or |Spearman correlation| of every latent of i with every latent of j          (spearman)
    S(i, j)  = (mean over columns of max² / sum + mean over rows of max² / sum) / 2   (0/0 counted as 0)
    UDR(j)   = the median over i != j of S(i, j)

Models without a KL (deterministic and quantized bottlenecks) keep every latent (`kl=None`); a constant
latent is zero after standardizing and takes no part. A setting with fewer than two models has nothing to
agree with and is refused with one sentence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics.base import as_codes

METHODS = ("lasso", "spearman")
LASSO_ALPHA = 0.1
KL_THRESHOLD = 0.01


@dataclass(frozen=True, eq=False)
class UDRResult:
    scores: np.ndarray  # per model: the median of its pairwise scores
    pairwise: np.ndarray  # S[i, j], 0 on the diagonal
    method: str


def relative_strength(corr: np.ndarray) -> float:
    """The score of one correlation matrix: the mean of max² / sum over columns and over rows, halved."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.nanmean(np.nan_to_num(np.max(corr, axis=0) ** 2 / np.sum(corr, axis=0), nan=0.0))
        y = np.nanmean(np.nan_to_num(np.max(corr, axis=1) ** 2 / np.sum(corr, axis=1), nan=0.0))
    return float((x + y) / 2)


def lasso_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import Lasso

    return np.abs(Lasso(alpha=LASSO_ALPHA).fit(a, b).coef_).T.reshape(a.shape[1], b.shape[1])


def spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Spearman correlation| of a's latents (rows) with b's (columns); a constant latent correlates 0."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(axis=0), rb - rb.mean(axis=0)
    na, nb = np.sqrt((ra ** 2).sum(axis=0)), np.sqrt((rb ** 2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (ra.T @ rb) / np.outer(na, nb)
    return np.abs(np.nan_to_num(corr, nan=0.0))


def compute_udr(codes: Sequence[Any], kl: Sequence[Any] | None = None, *, method: str = "lasso") -> UDRResult:
    """UDR of each of several models from their codes of the same images (a list of samples x latents
    arrays, same shape) and, where the models have one, each latent's mean KL to the prior."""
    if method not in METHODS:
        raise UsageError(f"unknown UDR method '{method}'; choose from: {', '.join(METHODS)}.")
    if len(codes) < 2:
        raise DataError(f"UDR scores each model by its agreement with the others of its setting, so it needs at "
                        f"least two runs; this setting has {len(codes)}.")
    reps = [as_codes(c, f"the codes of model {i}").astype(np.float64) for i, c in enumerate(codes)]
    if any(r.shape != reps[0].shape for r in reps):
        raise DataError("UDR needs every model's codes of the same images with the same number of latents; got "
                        f"shapes {', '.join(str(r.shape) for r in reps)}.")
    if len(reps[0]) < 2:
        raise DataError("UDR needs at least two images.")
    masks = []
    for i, r in enumerate(reps):
        std = r.std(axis=0)
        r = (r - r.mean(axis=0)) / np.where(std == 0, 1.0, std)  # StandardScaler: a constant latent stays 0
        k = None if kl is None or kl[i] is None else np.asarray(kl[i], dtype=np.float64)
        if k is not None:
            r = r * (k > 0.01)
        reps[i] = r
        masks.append(np.ones(r.shape[1], bool) if k is None else k > KL_THRESHOLD)
    n = len(reps)
    pairwise = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                corr = (lasso_matrix if method == "lasso" else spearman_matrix)(reps[i], reps[j])
                pairwise[i, j] = relative_strength(corr[masks[i]][:, masks[j]])
    scores = np.array([np.median(np.delete(pairwise[:, j], j)) for j in range(n)])
    return UDRResult(scores, pairwise, method)
