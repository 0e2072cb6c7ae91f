"""The unsupervised scores of disentanglement_lib 1.5 (evaluation/metrics/unsupervised_metrics.py
`unsupervised_metrics`; gin config: 10,000 samples, the histogram discretiser with 20 bins). They read the
codes alone, on the first `mig_n` rows of a protocol's draw (10,000, the reference's num_train as for MIG).

With S the covariance of the codes (np.cov, latents as variables):
    gaussian_total_correlation            = 1/2 (sum_i log S_ii - log det S)     KL(N(0, S) || N(0, diag S))
    gaussian_wasserstein_correlation      = 2 tr S - 2 tr sqrt(S diag(S))        W2² between the same two
    gaussian_wasserstein_correlation_norm = the above / tr S
    mutual_info_score                     = mean over pairs i != j of I(bin(z_i); bin(z_j))   (nats)

Degenerate codes: a constant latent has log S_ii = -inf and makes the reference's Gaussian scores NaN, so
the two Gaussian correlations are taken over the latents that vary (the MI score keeps every latent, as the
reference does: a constant one has MI 0); codes whose covariance is singular over the varying latents (a
latent that is an exact linear combination of others) have an infinite total correlation and are refused
with one sentence, as are codes with fewer than two latents that vary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.base import NUM_BINS, Job, Metric, as_codes, histogram_discretize


@dataclass(frozen=True, eq=False)
class UnsupervisedResult:
    total_correlation: float
    wasserstein: float
    wasserstein_norm: float
    mutual_info: float
    mutual_info_matrix: np.ndarray  # latents x latents, nats, diagonal 0


def gaussian_total_correlation(cov: np.ndarray) -> float:
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        raise DataError("the codes' covariance is singular (a latent is an exact linear combination of others), "
                        "so their Gaussian total correlation is infinite.")
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    from scipy.linalg import sqrtm

    # sqrtm of a PSD product can carry a rounding-sized imaginary part; the trace is real.
    return float(2 * np.trace(cov) - 2 * np.real(np.trace(sqrtm(cov * np.diag(cov)[:, None]))))


def mutual_info_matrix(binned: np.ndarray) -> np.ndarray:
    """I(bin z_i; bin z_j) in nats for i != j, 0 on the diagonal."""
    from sklearn.metrics import mutual_info_score

    d = binned.shape[1]
    mi = np.zeros((d, d))
    for i in range(d):
        for j in range(i + 1, d):
            mi[i, j] = mi[j, i] = mutual_info_score(binned[:, i], binned[:, j])
    return mi


def compute_unsupervised(codes: Any, *, num_bins: int = NUM_BINS) -> UnsupervisedResult:
    """The four scores of codes (samples x latents), on all rows."""
    z = as_codes(codes, "the unsupervised scores' codes").astype(np.float64)
    varying = z.var(axis=0) > 0.0
    if varying.sum() < 2 or len(z) < 2:
        raise DataError(f"the unsupervised scores compare latents with each other, so they need at least two that "
                        f"vary; the codes have {int(varying.sum())} of {z.shape[1]} in {len(z)} rows.")
    cov = np.atleast_2d(np.cov(z[:, varying], rowvar=False))
    total_correlation = gaussian_total_correlation(cov)  # first: it refuses a singular covariance
    wasserstein = gaussian_wasserstein_correlation(cov)
    mi = mutual_info_matrix(histogram_discretize(z, num_bins))
    d = z.shape[1]
    return UnsupervisedResult(total_correlation, wasserstein, wasserstein / float(np.trace(cov)),
                              float(mi.sum() / (d * d - d)), mi)


def _run(job: Job) -> tuple[dict, Any]:
    r = compute_unsupervised(job.first("mig_n")[0])
    job.advance()
    return {"gaussian_total_correlation": r.total_correlation, "gaussian_wasserstein_correlation": r.wasserstein,
            "gaussian_wasserstein_correlation_norm": r.wasserstein_norm, "mutual_info_score": r.mutual_info}, r


METRIC = Metric(
    "unsupervised", "unsupervised scores", "Unsupervised scores (Locatello et al. 2019)",
    {"gaussian_total_correlation": "Gaussian total correlation",
     "gaussian_wasserstein_correlation": "Gaussian Wasserstein correlation",
     "gaussian_wasserstein_correlation_norm": "Gaussian Wasserstein correlation (normalised)",
     "mutual_info_score": "mutual information score"},
    {"gaussian_total_correlation": "GTC", "gaussian_wasserstein_correlation_norm": "GWC norm",
     "mutual_info_score": "MI score"}, ("mig_n",), _run, rows=("mig_n",))
