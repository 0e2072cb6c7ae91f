"""InfoMEC: modularity, explicitness and compactness from mutual information (Hsu et al., NeurIPS 2023),
in the variant the FactorQVAE paper used for Table 1.

    NMI[j, i] = I(s_j; z_i) / H(s_j)          (F factors x d latents, nats)

Discrete codes use the plug-in estimator (mutual_info_score); continuous codes are standardized per
latent and use the kNN estimator of mutual_info_classif (3 neighbours in FactorQVAE, 10 in the
original). H(s_j) is the plug-in entropy of the label-encoded factor.

Active latents: discrete -> range > 0; continuous -> range > (largest range) / 20. With A active
latents and g(v) = (max v / sum v - 1/n) / (1 - 1/n) for a vector v of length n:

    InfoM = mean over active latents i of g(NMI[:, i])
    InfoC = mean over factors j of g(NMI[j, active])
    InfoE = mean over factors j of (H_null - H_pred) / H_null

which is the published formula (the mean of g is g of the mean of the ratios). g is completed where the
published code would divide by zero: a vector of length 1 with a positive entry scores 1 (one outcome
is fully concentrated, as in DCI), an all-zero vector scores 0 (no information, no concentration), and
with no active latent InfoM = InfoC = 0.

H_pred is the log-loss, on the same samples, of an unregularized multinomial logistic regression (lbfgs,
max_iter 500, balanced class weights) from one-hot (discrete) or standardized (continuous) codes to the
factor; H_null is the same model fitted on all-zero features. InfoE uses all latents.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics.base import Job, Metric, as_codes, as_factors, require_same_rows

# A continuous latent is active when its range exceeds this fraction of the largest range.
CONTINUOUS_ACTIVE_FRACTION = 1.0 / 20.0


@dataclass(frozen=True, eq=False)
class InfoMECResult:
    """Scores, the NMI matrix (n_factors x n_latents) and the active-latent mask of one evaluation."""

    infom: float
    infoc: float
    infoe: float
    nmi: np.ndarray
    active: np.ndarray
    n_active: int
    per_factor_infoe: np.ndarray


def label_encode(factors: np.ndarray) -> np.ndarray:
    """Each factor column mapped to 0..K-1 in sorted order of its values."""
    return np.stack([np.unique(factors[:, j], return_inverse=True)[1].reshape(-1)
                     for j in range(factors.shape[1])], axis=1)


def _standardize(codes: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    # StandardScaler leaves a constant column at zero instead of dividing by a zero deviation.
    return StandardScaler().fit_transform(np.asarray(codes, dtype=np.float64))


def nmi_matrix(codes: Any, factors: Any, *, discrete: bool, n_neighbors: int = 3, seed: int = 0) -> np.ndarray:
    """NMI[j, i] = I(s_j; z_i) / H(s_j) for factors s (samples x F) and codes z (samples x d)."""
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import mutual_info_score

    z = as_codes(codes)
    s = label_encode(as_factors(factors))
    require_same_rows(z, s)
    if not discrete:
        z = _standardize(z)
    nmi = np.empty((s.shape[1], z.shape[1]))
    for j in range(s.shape[1]):
        h = mutual_info_score(s[:, j], s[:, j])
        if h <= 0.0:
            raise DataError(f"factor {j} takes a single value in the {len(s)} InfoMEC rows; "
                            "its entropy is zero.")
        for i in range(z.shape[1]):
            if discrete:
                mi = mutual_info_score(s[:, j], z[:, i])
            else:
                # One latent at a time, as published: the estimator's jitter is drawn per call.
                mi = mutual_info_classif(z[:, [i]], s[:, j], discrete_features=False,
                                         n_neighbors=n_neighbors, random_state=seed)[0]
            nmi[j, i] = mi / h
    return nmi


def active_latents(codes: Any, *, discrete: bool) -> np.ndarray:
    """Boolean mask of the latents that vary: range > 0 (discrete), range > max range / 20 (continuous)."""
    z = as_codes(codes)
    ranges = z.max(axis=0).astype(np.float64) - z.min(axis=0).astype(np.float64)
    if discrete:
        return ranges > 0
    return ranges > ranges.max() * CONTINUOUS_ACTIVE_FRACTION


def _concentration(v: np.ndarray) -> float:
    """(max/sum - 1/n) / (1 - 1/n): 1 when all mass is on one entry, 0 when it is spread evenly."""
    total = float(v.sum())
    if total <= 0.0:
        return 0.0
    n = v.shape[0]
    if n == 1:
        return 1.0
    return (float(v.max()) / total - 1.0 / n) / (1.0 - 1.0 / n)


def modularity_compactness(nmi: np.ndarray, active: np.ndarray) -> tuple[float, float]:
    """(InfoM, InfoC) of an NMI matrix (factors x latents) restricted to the active latents."""
    pruned = np.asarray(nmi, dtype=np.float64)[:, np.asarray(active, dtype=bool)]
    if pruned.shape[1] == 0:
        return 0.0, 0.0
    infom = float(np.mean([_concentration(pruned[:, i]) for i in range(pruned.shape[1])]))
    infoc = float(np.mean([_concentration(pruned[j, :]) for j in range(pruned.shape[0])]))
    return infom, infoc


def _logistic_log_loss(x: Any, y: np.ndarray) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    # No penalty is C=np.inf in current scikit-learn (`penalty=None` is deprecated); lbfgs fits the
    # multinomial model for any number of classes, so `multi_class` is gone too.
    model = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=500, tol=1e-4,
                               class_weight="balanced", fit_intercept=True)
    with warnings.catch_warnings():
        # Separable codes never reach the tolerance; 500 iterations is the protocol, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return float(log_loss(y, model.predict_proba(x), labels=model.classes_))


def explicitness_per_factor(codes: Any, factors: Any, *, discrete: bool) -> np.ndarray:
    """(H_null - H_pred) / H_null for each factor (see the module docstring)."""
    from sklearn.preprocessing import OneHotEncoder

    z = as_codes(codes)
    s = label_encode(as_factors(factors))
    require_same_rows(z, s)
    if discrete:
        # Sparse one-hot, as in the original implementation: the same fit as a dense matrix, much faster.
        x = OneHotEncoder(sparse_output=True).fit_transform(z)
    else:
        x = _standardize(z)
    null = np.zeros(z.shape)
    out = np.empty(s.shape[1])
    for j in range(s.shape[1]):
        if len(np.unique(s[:, j])) < 2:
            raise DataError(f"factor {j} takes a single value in the {len(s)} InfoMEC rows; "
                            "a classifier needs at least two.")
        h_pred = _logistic_log_loss(x, s[:, j])
        h_null = _logistic_log_loss(null, s[:, j])
        out[j] = (h_null - h_pred) / h_null
    return out


def compute_infomec(codes: Any, factors: Any, *, discrete: bool, n_neighbors: int = 3,
                    seed: int = 0) -> InfoMECResult:
    """InfoMEC of codes (samples x latents) against integer factor codes (samples x factors)."""
    if n_neighbors < 1:
        raise UsageError(f"the number of neighbours must be at least 1, got {n_neighbors}.")
    if seed < 0:
        raise UsageError(f"seed must be non-negative, got {seed}.")
    z = as_codes(codes)
    s = as_factors(factors)
    require_same_rows(z, s)
    nmi = nmi_matrix(z, s, discrete=discrete, n_neighbors=n_neighbors, seed=seed)
    active = active_latents(z, discrete=discrete)
    infom, infoc = modularity_compactness(nmi, active)
    per_factor = explicitness_per_factor(z, s, discrete=discrete)
    return InfoMECResult(
        infom=infom,
        infoc=infoc,
        infoe=float(np.mean(per_factor)),
        nmi=nmi,
        active=active,
        n_active=int(active.sum()),
        per_factor_infoe=per_factor,
    )


def _run(job: Job) -> tuple[dict, Any]:
    r = compute_infomec(*job.first("infomec_n"), discrete=job.discrete, n_neighbors=job.n_neighbors, seed=job.seed)
    job.advance()
    return {"infom": r.infom, "infoe": r.infoe, "infoc": r.infoc, "active_latents": r.n_active}, r


METRIC = Metric(
    "infomec", "InfoMEC", "InfoMEC (Hsu et al. 2023)",
    {"infom": "InfoM", "infoe": "InfoE", "infoc": "InfoC", "active_latents": "active latents"},
    {"infom": "InfoM", "infoe": "InfoE", "infoc": "InfoC"}, ("infomec_n",), _run, rows=("infomec_n",),
    counts=("active_latents",))
