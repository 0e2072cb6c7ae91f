"""Modularity and Explicitness (Ridgeway & Mozer, NeurIPS 2018), as disentanglement_lib 1.5 computes them
(evaluation/metrics/modularity_explicitness.py, gin config: 10,000 train and 5,000 test samples,
histogram discretiser with 20 bins).

Modularity, on the training rows: MI[i, j] = I(bin(z_i); s_j) as for MIG (base.py), then per latent

    delta_i = (sum_j MI_ij^2 - max_j MI_ij^2) / (max_j MI_ij^2 (F - 1)),   modularity_i = 1 - delta_i

and Modularity = mean over ALL latents, a latent with no information scoring 0 (so a collapsed latent
lowers the score, as in the reference). With a single factor the reference divides 0 by 0; here a latent
with information scores 1 (it can only be about that factor).

Explicitness: each latent standardised with the training rows' mean and standard deviation (numpy's, ddof
0); one logistic regression per factor from all latents (the reference's `LogisticRegression()`, written
out as scikit-learn >= 0.22 resolves it: lbfgs, multinomial, C = 1, 100 iterations, tol 1e-4); score =
the mean over the factor's classes of the one-vs-rest ROC-AUC of the predicted probabilities, on the
training rows (`explicitness_train`) and on the test rows (`explicitness`). Where the reference breaks,
this completes it: a constant latent (standard deviation 0, which the reference turns into NaN inputs)
is divided by 1 instead, so it is a constant feature; a class absent from the test rows is left out of
the test average (the reference's binarizer would then disagree with the classifier's columns).

Discrete codes: the discretiser bins the indices as it bins any number (base.py); the logistic
regression sees standardised indices as numbers, as the reference does with the same array.
Factors are fitted in parallel (joblib) with the serial result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.base import (
    NUM_BINS,
    Job,
    Metric,
    discrete_mutual_info,
    histogram_discretize,
    run_tasks,
    train_test,
)


@dataclass(frozen=True, eq=False)
class ModularityResult:
    """Modularity, Explicitness (test and train), per-latent modularity, per-factor AUCs and the MI
    matrix (latents x factors, nats) of the training rows."""

    modularity: float
    explicitness: float
    explicitness_train: float
    per_latent_modularity: np.ndarray
    per_factor_explicitness: np.ndarray
    per_factor_explicitness_train: np.ndarray
    mutual_info: np.ndarray


def modularity_per_latent(mutual_info: Any) -> np.ndarray:
    """1 - delta_i of each latent of an MI matrix (latents x factors); 0 for a latent with no information."""
    sq = np.square(np.asarray(mutual_info, dtype=np.float64))
    n_factors = sq.shape[1]
    peak = sq.max(axis=1)
    out = np.zeros(sq.shape[0])
    informative = peak > 0.0
    if n_factors == 1:
        out[informative] = 1.0
        return out
    rest = sq.sum(axis=1) - peak
    out[informative] = 1.0 - rest[informative] / (peak[informative] * (n_factors - 1.0))
    return out


def modularity(mutual_info: Any) -> float:
    """Mean modularity over all latents of an MI matrix (latents x factors)."""
    return float(np.mean(modularity_per_latent(mutual_info)))


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays standardised with the training rows' mean and std (ddof 0); a zero std counts as 1."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0.0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def logistic_regression() -> Any:
    """The reference's `LogisticRegression()` with every setting written out."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, solver="lbfgs", max_iter=100, tol=1e-4, fit_intercept=True)


def mean_class_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Mean over the classes present in y of the ROC-AUC of 'is this class' against its probability."""
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(y == k, proba[:, c]) for c, k in enumerate(classes) if (y == k).any()]
    return float(np.mean(aucs))


def _explicitness_factor(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                         y_test: np.ndarray) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # 100 iterations is the protocol, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = logistic_regression().fit(x_train, y_train)
    train = mean_class_auc(y_train, model.predict_proba(x_train), model.classes_)
    test = mean_class_auc(y_test, model.predict_proba(x_test), model.classes_)
    return train, test


def compute_modularity(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any, *,
                       num_bins: int = NUM_BINS, jobs: int = 1, progress: Any = None) -> ModularityResult:
    """Modularity (training rows) and Explicitness (fitted on the training rows, scored on both) of codes
    (samples x latents) against integer factor codes (samples x factors). `progress` advances per factor."""
    x_train, y_train, x_test, y_test = train_test(codes_train, factors_train, codes_test, factors_test, "Modularity")
    for rows, part in ((y_train, "training"), (y_test, "test")):
        for j in range(rows.shape[1]):
            if len(np.unique(rows[:, j])) < 2:
                raise DataError(f"factor {j} takes a single value in the {len(rows)} Modularity {part} rows; "
                                "a classifier and its ROC-AUC need at least two.")
    n_classes = [len(np.unique(y_train[:, j])) for j in range(y_train.shape[1])]

    mi = discrete_mutual_info(histogram_discretize(x_train, num_bins), y_train)
    per_latent = modularity_per_latent(mi)
    z_train, z_test = standardize(np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64))
    order = sorted(range(len(n_classes)), key=lambda j: (-n_classes[j], j))
    tasks = [(j, (z_train, y_train[:, j], z_test, y_test[:, j])) for j in order]
    fitted = run_tasks(_explicitness_factor, tasks, jobs=jobs, progress=progress)
    train = np.array([fitted[j][0] for j in range(len(n_classes))])
    test = np.array([fitted[j][1] for j in range(len(n_classes))])
    return ModularityResult(
        modularity=float(np.mean(per_latent)),
        explicitness=float(np.mean(test)),
        explicitness_train=float(np.mean(train)),
        per_latent_modularity=per_latent,
        per_factor_explicitness=test,
        per_factor_explicitness_train=train,
        mutual_info=mi,
    )


def _run(job: Job) -> tuple[dict, Any]:
    r = compute_modularity(*job.split("modularity_train", "modularity_test"), jobs=job.jobs, progress=job.progress)
    return {"modularity": r.modularity, "explicitness": r.explicitness,
            "explicitness_train": r.explicitness_train}, r


METRIC = Metric(
    "modularity", "Modularity and Explicitness", "Modularity and Explicitness (Ridgeway & Mozer 2018)",
    {"modularity": "Modularity", "explicitness": "Explicitness (test ROC-AUC)",
     "explicitness_train": "Explicitness (train ROC-AUC)"},
    {"modularity": "Modularity", "explicitness": "Explicitness"}, ("modularity_train", "modularity_test"), _run,
    rows=("modularity_train", "modularity_test"), per_factor=True)
