"""SAP, the separated attribute predictability score (Kumar et al., ICLR 2018), as disentanglement_lib 1.5
computes it for discrete factors (evaluation/metrics/sap_score.py, gin config: 10,000 train and 5,000
test samples, continuous_factors=False).

    S[i, j] = test accuracy of a linear SVM that predicts factor j from latent i alone
    SAP     = mean over factors j of (S_(1)j - S_(2)j)

with S_(1)j >= S_(2)j the two largest entries of column j. The SVM is the reference's
`LinearSVC(C=0.01, class_weight="balanced")` with every setting written out (squared hinge, L2, one-vs-
rest, intercept, tol 1e-4, 1,000 iterations), so a change of scikit-learn's defaults cannot move the
numbers. The solver is the primal one (`dual=False`): it is what that line resolves to on scikit-learn
>= 1.5 (dual="auto" with more samples than features), it is deterministic, and it solves the same convex
problem as the dual solver that older scikit-learn used by default, which stops at its iteration limit on
raw integer codes (benchmarks/metrics.py measures both).

Discrete codes: the SVM sees a codebook index as one number, as the reference does with the same array.
A linear one-vs-rest classifier on one feature can only cut that number into intervals, so on indices
whose order means nothing SAP measures little more than chance; that is the published metric.

Factors are independent problems, fitted in parallel (joblib threads) with the serial result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.base import Job, Metric, require_latents, run_tasks, train_test

# disentanglement_lib: svm.LinearSVC(C=0.01, class_weight="balanced").
SVM_C = 0.01


@dataclass(frozen=True, eq=False)
class SAPResult:
    """SAP, the gap of each factor and the accuracy matrix (latents x factors)."""

    sap: float
    per_factor_gap: np.ndarray
    score_matrix: np.ndarray


def svm(c: float = SVM_C) -> Any:
    """The reference's classifier, every setting explicit."""
    from sklearn.svm import LinearSVC

    return LinearSVC(C=c, class_weight="balanced", dual=False, loss="squared_hinge", penalty="l2", tol=1e-4,
                     max_iter=1000, fit_intercept=True, intercept_scaling=1.0, multi_class="ovr")


def top_two_gap(score_matrix: Any) -> tuple[float, np.ndarray]:
    """(mean, per factor) of the gap between the two largest entries of each column."""
    top = np.sort(np.asarray(score_matrix, dtype=np.float64), axis=0)
    per_factor = top[-1] - top[-2]
    return float(np.mean(per_factor)), per_factor


def _factor_column(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   c: float) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning

    column = np.empty(x_train.shape[1])
    with warnings.catch_warnings():
        # 1,000 iterations is the protocol, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(x_train.shape[1]):
            model = svm(c).fit(x_train[:, [i]], y_train)
            column[i] = np.mean(model.predict(x_test[:, [i]]) == y_test)
    return column


def compute_sap(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any, *,
                c: float = SVM_C, jobs: int = 1, progress: Any = None) -> SAPResult:
    """SAP of codes (samples x latents) against integer factor codes (samples x factors): SVMs fitted on
    the training rows, accuracy on the test rows. `progress` advances once per factor."""
    x_train, y_train, x_test, y_test = train_test(codes_train, factors_train, codes_test, factors_test, "SAP")
    require_latents(x_train, 2, "SAP", "compares the two most predictive latents of each factor")
    n_classes = [len(np.unique(y_train[:, j])) for j in range(y_train.shape[1])]
    for j, k in enumerate(n_classes):
        if k < 2:
            raise DataError(f"factor {j} takes a single value in the {len(y_train)} SAP training rows; "
                            "a classifier needs at least two.")
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    # One-vs-rest: a factor's cost grows with its classes, so the largest start first.
    order = sorted(range(len(n_classes)), key=lambda j: (-n_classes[j], j))
    tasks = [(j, (x_train, y_train[:, j], x_test, y_test[:, j], c)) for j in order]
    # liblinear releases the GIL: threads share the arrays and start at once (processes would take longer
    # to start than these fits take).
    columns = run_tasks(_factor_column, tasks, jobs=jobs, progress=progress, threads=True)
    matrix = np.stack([columns[j] for j in range(len(n_classes))], axis=1)
    sap, per_factor = top_two_gap(matrix)
    return SAPResult(sap=sap, per_factor_gap=per_factor, score_matrix=matrix)


def _run(job: Job) -> tuple[dict, Any]:
    r = compute_sap(*job.split("sap_train", "sap_test"), jobs=job.jobs, progress=job.progress)
    return {"sap": r.sap}, r


METRIC = Metric("sap", "SAP", "SAP (Kumar et al. 2018)", {"sap": "SAP"}, {"sap": "SAP"}, ("sap_train", "sap_test"),
                _run, rows=("sap_train", "sap_test"), per_factor=True)
