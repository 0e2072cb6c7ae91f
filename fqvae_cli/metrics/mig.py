"""MIG, the mutual information gap (Chen et al., NeurIPS 2018), as disentanglement_lib 1.5 computes it
(evaluation/metrics/mig.py, gin config: 10,000 samples, histogram discretiser with 20 bins).

    MI[i, j] = I(bin(z_i); s_j)                 plug-in, nats (base.py)
    MIG      = mean over factors j of (MI_(1)j - MI_(2)j) / H(s_j)

where MI_(1)j >= MI_(2)j are the two largest entries of column j. A factor captured by one latent alone
scores 1; one split evenly over two latents, or not captured at all, scores 0.

The codes are the values the model reports (means or samples for continuous models, codebook indices for
quantized ones), discretised by the same 20 equal-width bins in both cases; base.py says what that
does to integer codes. The plug-in estimate is biased upwards by about (bins - 1)(|s| - 1) / 2n nats, so
MIG is only comparable at the same number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.metrics.base import (
    NUM_BINS,
    Job,
    Metric,
    as_codes,
    as_factors,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    require_latents,
    require_same_rows,
)


@dataclass(frozen=True, eq=False)
class MIGResult:
    """MIG, the gap of each factor, and the MI matrix (latents x factors, nats) with the entropies."""

    mig: float
    per_factor_gap: np.ndarray
    mutual_info: np.ndarray
    entropy: np.ndarray


def gap_score(mutual_info: Any, entropy: Any) -> tuple[float, np.ndarray]:
    """(mean, per factor) of the normalised gap between the two largest MI entries of each column."""
    m = np.asarray(mutual_info, dtype=np.float64)
    top = np.sort(m, axis=0)[::-1]
    per_factor = (top[0] - top[1]) / np.asarray(entropy, dtype=np.float64)
    return float(np.mean(per_factor)), per_factor


def compute_mig(codes: Any, factors: Any, *, num_bins: int = NUM_BINS) -> MIGResult:
    """MIG of codes (samples x latents) against integer factor codes (samples x factors), on all rows."""
    z = as_codes(codes, "the MIG codes")
    s = as_factors(factors, "the MIG factors")
    require_same_rows(z, s, "the MIG codes", "the MIG factors")
    require_latents(z, 2, "MIG", "compares the two most informative latents of each factor")
    entropy = discrete_entropy(s, "MIG rows")
    mi = discrete_mutual_info(histogram_discretize(z, num_bins), s)
    mig, per_factor = gap_score(mi, entropy)
    return MIGResult(mig=mig, per_factor_gap=per_factor, mutual_info=mi, entropy=entropy)


def _run(job: Job) -> tuple[dict, Any]:
    r = compute_mig(*job.first("mig_n"))
    job.advance()
    return {"mig": r.mig}, r


METRIC = Metric("mig", "MIG", "MIG (Chen et al. 2018)", {"mig": "MIG"}, {"mig": "MIG"}, ("mig_n",), _run,
                rows=("mig_n",))
