"""IRS, the interventional robustness score (Suter et al., ICML 2019), as disentanglement_lib 1.5 computes
it (evaluation/metrics/irs.py `compute_irs` and `scalable_disentanglement_score`; gin config: 10,000
samples, the histogram discretiser with 20 bins, diff_quantile 0.99).

The factors are first put through the same 20-bin discretiser as MIG's codes (base.py: up to 20
consecutive values keep a bin each). Constant latents are dropped; then for latent z and factor g

    dev(z, g) = mean over the values v of g of the 99th percentile of |z - E[z | g = v]| (rows with g = v)
    IRS(z)    = max over g of 1 - dev(z, g) / max |z - E[z]|
    IRS       = the average of IRS(z) weighted by max |z - E[z]|   (0 when every latent is constant)

`irs_active` is the number of latents that vary (the reference's num_active_dims). Rows: the first
`mig_n` of a protocol's draw (10,000: the reference samples num_train = 10,000 for IRS as for MIG)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.metrics.base import NUM_BINS, Job, Metric, as_codes, as_factors, histogram_discretize, require_same_rows

DIFF_QUANTILE = 0.99  # the reference's default; its gin configs leave it


@dataclass(frozen=True, eq=False)
class IRSResult:
    """IRS, the active latents, each active latent's score and the IRS matrix (active latents x factors)."""

    irs: float
    n_active: int
    per_latent: np.ndarray
    matrix: np.ndarray


def irs_matrix(factors: np.ndarray, codes: np.ndarray, diff_quantile: float = DIFF_QUANTILE
               ) -> tuple[np.ndarray, np.ndarray]:
    """(1 - normalized deviations: latents x factors, max deviation of each latent) of varying codes."""
    max_dev = np.max(np.abs(codes - codes.mean(axis=0)), axis=0)
    cum = np.zeros((codes.shape[1], factors.shape[1]))
    for g in range(factors.shape[1]):
        values = np.unique(factors[:, g])
        for v in values:
            group = codes[factors[:, g] == v]
            cum[:, g] += np.percentile(np.abs(group - group.mean(axis=0)), q=diff_quantile * 100, axis=0)
        cum[:, g] /= len(values)
    return 1.0 - cum / max_dev[:, None], max_dev


def compute_irs(codes: Any, factors: Any, *, num_bins: int = NUM_BINS,
                diff_quantile: float = DIFF_QUANTILE) -> IRSResult:
    """IRS of codes (samples x latents) against integer factor codes (samples x factors), on all rows."""
    z = as_codes(codes, "the IRS codes").astype(np.float64)
    s = as_factors(factors, "the IRS factors")
    require_same_rows(z, s, "the IRS codes", "the IRS factors")
    active = z.var(axis=0) > 0.0
    if not active.any():
        return IRSResult(0.0, 0, np.zeros(0), np.zeros((0, s.shape[1])))
    matrix, max_dev = irs_matrix(histogram_discretize(s, num_bins), z[:, active], diff_quantile)
    per_latent = matrix.max(axis=1)
    return IRSResult(float(np.average(per_latent, weights=max_dev)), int(active.sum()), per_latent, matrix)


def _run(job: Job) -> tuple[dict, Any]:
    r = compute_irs(*job.first("mig_n"))
    job.advance()
    return {"irs": r.irs, "irs_active": r.n_active}, r


METRIC = Metric("irs", "IRS", "IRS (Suter et al. 2019)", {"irs": "IRS", "irs_active": "IRS active latents"},
                {"irs": "IRS"}, ("mig_n",), _run, rows=("mig_n",), counts=("irs_active",))
