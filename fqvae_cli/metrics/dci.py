"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, ICLR 2018), computed
with the disentanglement_lib protocol that the FactorQVAE paper used for Table 1.

One scikit-learn GradientBoostingClassifier with default settings per factor predicts the factor's
integer code from the raw codes. Column j of the importance matrix R (latents x factors) is the
absolute `feature_importances_` of factor j's classifier.

    D = sum_i rho_i (1 - H_F(R_i. / sum_j R_ij)),   rho_i = sum_j R_ij / sum R
    C = sum_j rho_j (1 - H_d(R_.j / sum_i R_ij)),   rho_j = sum_i R_ij / sum R
    I = mean over factors of the test accuracy (the train accuracy is reported beside it)

H_b is the entropy with logarithm base b (F factors, d latents), taken after adding 1e-11 to every
entry; an all-zero R gets uniform weights rho. The trees see the order of code values, so DCI is
invariant to permuting latents and to increasing relabelings of a latent's values, not to arbitrary
ones (InfoMEC is).

Factors are independent problems, so they are fitted in parallel (joblib); each classifier's
random_state comes from (seed, factor index) alone, which makes the parallel result identical to the
serial one bit for bit.

The estimator of R (`estimator`, `--dci-estimator`) changes D, C and I, and can reorder models; the D
and C formulas above stay the same for all three:
- gbt (default, disentanglement_lib and the FactorQVAE paper): as above, on the dci_train / dci_test rows.
- rf (QLAE's and Tripod's disentangle/metrics/dci.py): RandomForestClassifier(100 trees, max_depth 10,
  entropy criterion) per factor on the same rows pooled and split 90/10 by scikit-learn's
  train_test_split(random_state=42), as the reference splits them; continuous codes standardized,
  discrete codes one-hot (the reference's inputs), a latent's importance the sum over its one-hot
  columns (the reference's matrix has a row per one-hot column). Unlike the reference's forest, which
  draws from the global random state, factor j's forest is seeded from (seed, j).
- lasso (Eastwood & Williams' own code, cianeastwood/qedr quantify.ipynb): Lasso(alpha=0.02) per factor
  from codes standardized with the training rows' mean and deviation (one-hot for discrete codes) to
  the standardized factor code; R = |coefficients|. I is 1 - the test NRMSE (their informativeness
  is the NRMSE, an error), I train the same on the training rows.
Rows of rf and lasso are recorded under their own keys (dci_rf_d, dci_lasso_c, ...; gbt's keep
dci_d, ...), so a table never mixes estimators in one cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics.base import Job, Metric, run_tasks, task_seed, train_test

ESTIMATORS = ("gbt", "rf", "lasso")
RF_TREES, RF_MAX_DEPTH, RF_TEST_FRACTION, RF_SPLIT_SEED = 100, 10, 0.1, 42  # Tripod's dci.py
LASSO_ALPHA = 0.02  # qedr's quantify.ipynb: "constant alpha for all models and targets"

# Added to every importance before the entropies, as in disentanglement_lib: keeps log(0) out and
# makes an all-zero row count as uniform (no preference for any factor).
EPS = 1e-11


@dataclass(frozen=True, eq=False)
class DCIResult:
    """Scores and the importance matrix (n_latents x n_factors) of one DCI evaluation."""

    d: float
    c: float
    i: float
    i_train: float
    importance: np.ndarray
    per_factor_test_acc: np.ndarray
    per_factor_train_acc: np.ndarray


def _check_importance(importance: Any) -> np.ndarray:
    r = np.asarray(importance, dtype=np.float64)
    if r.ndim != 2 or r.size == 0:
        raise DataError(f"an importance matrix must be a non-empty 2-D array, got shape {r.shape}.")
    if not np.isfinite(r).all() or (r < 0).any():
        raise DataError("an importance matrix must hold finite non-negative values.")
    return r


def _one_minus_entropy(rows: np.ndarray) -> np.ndarray:
    """1 - H_k of each row (normalized to sum 1), k = row length, after adding EPS.

    With a single outcome (k = 1) the entropy is 0 in any base, so the score is 1; the published code
    would divide by log(1) = 0 there."""
    from scipy.stats import entropy

    k = rows.shape[1]
    if k == 1:
        return np.ones(rows.shape[0])
    # A row with no importance at all is uniform after EPS: its 1 - H is 0, written exactly (the
    # entropy's rounding leaves 2.2e-16 there).
    return np.where(rows.sum(axis=1) == 0.0, 0.0, 1.0 - entropy(rows + EPS, base=k, axis=1))


def _weights(r: np.ndarray, axis: int) -> np.ndarray:
    if r.sum() == 0.0:
        r = np.ones_like(r)
    return r.sum(axis=axis) / r.sum()


def disentanglement(importance: Any) -> float:
    """D of an importance matrix R (latents x factors): how much each latent is about a single factor."""
    r = _check_importance(importance)
    return float(np.sum(_one_minus_entropy(r) * _weights(r, axis=1)))


def completeness(importance: Any) -> float:
    """C of an importance matrix R (latents x factors): how much each factor is captured by a single latent."""
    r = _check_importance(importance)
    return float(np.sum(_one_minus_entropy(r.T) * _weights(r, axis=0)))


def factor_random_state(seed: int, factor: int) -> int:
    """The classifier seed of one factor: a function of (seed, factor index) only, never of the order in
    which factors are fitted or of the worker that fits them."""
    return task_seed(seed, factor)


def _fit_factor(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                random_state: int) -> tuple[np.ndarray, float, float]:
    from sklearn.ensemble import GradientBoostingClassifier

    # Default settings on purpose (100 stages, depth 3, learning rate 0.1): this is the published protocol.
    model = GradientBoostingClassifier(random_state=random_state)
    model.fit(x_train, y_train)
    importance = np.abs(model.feature_importances_)
    train_acc = float(np.mean(model.predict(x_train) == y_train))
    test_acc = float(np.mean(model.predict(x_test) == y_test))
    return importance, train_acc, test_acc


def _fit_forest(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                random_state: int) -> tuple[np.ndarray, float, float]:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=RF_TREES, criterion="entropy", max_depth=RF_MAX_DEPTH,
                                   min_samples_split=2, n_jobs=1, random_state=random_state)
    model.fit(x_train, y_train)
    train_acc = float(np.mean(model.predict(x_train) == y_train))
    test_acc = float(np.mean(model.predict(x_test) == y_test))
    return np.abs(model.feature_importances_), train_acc, test_acc


def _nrmse(predicted: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - target) ** 2)) / np.std(target))


def _fit_lasso(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
               random_state: int) -> tuple[np.ndarray, float, float]:
    from sklearn.linear_model import Lasso

    mean, std = float(np.mean(y_train)), float(np.std(y_train))
    t_train, t_test = (y_train - mean) / std, (y_test - mean) / std
    model = Lasso(alpha=LASSO_ALPHA).fit(x_train, t_train)
    if np.std(t_test) == 0.0:
        raise DataError("a factor takes a single value in the DCI test rows; its NRMSE divides by zero.")
    return (np.abs(model.coef_), 1.0 - _nrmse(model.predict(x_train), t_train),
            1.0 - _nrmse(model.predict(x_test), t_test))


def _inputs(x_train: np.ndarray, x_test: np.ndarray, discrete: bool, standardize: bool):
    """(train inputs, test inputs, first column of each latent): one-hot for discrete codes (categories
    from all rows), else standardized (with the training rows' mean and deviation) or as they are."""
    n_train = len(x_train)
    if discrete:
        from sklearn.preprocessing import OneHotEncoder

        enc = OneHotEncoder(sparse_output=False, dtype=np.float32).fit(np.concatenate([x_train, x_test]))
        starts = np.cumsum([0] + [len(c) for c in enc.categories_[:-1]])
        both = enc.transform(np.concatenate([x_train, x_test]))
        return both[:n_train], both[n_train:], starts
    if standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0  # a constant latent stays 0 rather than dividing by zero
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return x_train, x_test, np.arange(x_train.shape[1])


def _rf_rows(x_train, y_train, x_test, y_test, discrete: bool):
    """The reference's rows: all of them pooled, standardized or one-hot, split 90/10 with seed 42."""
    from sklearn.model_selection import train_test_split

    x = np.concatenate([x_train, x_test]).astype(np.float64)
    y = np.concatenate([y_train, y_test])
    if discrete:
        x, _, starts = _inputs(x, x[:0], True, False)
    else:
        from sklearn.preprocessing import StandardScaler

        x, starts = StandardScaler().fit_transform(x), np.arange(x.shape[1])
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=RF_TEST_FRACTION, random_state=RF_SPLIT_SEED)
    return (np.ascontiguousarray(x_tr, dtype=np.float32), y_tr, np.ascontiguousarray(x_te, dtype=np.float32),
            y_te, starts)


def compute_dci(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any, *,
                jobs: int = 1, seed: int = 0, progress: Any = None, estimator: str = "gbt",
                discrete: bool = False) -> DCIResult:
    """DCI of a representation: codes (samples x latents) against integer factor codes (samples x factors).

    `estimator` is gbt, rf or lasso (module docstring); `discrete` codes are one-hot for rf and lasso.
    `jobs` processes fit the factors (-1: all cores); `progress` (a fqvae_cli.console.Progress or None)
    is advanced once per fitted factor."""
    if seed < 0:
        raise UsageError(f"seed must be non-negative, got {seed}.")
    if estimator not in ESTIMATORS:
        raise UsageError(f"unknown DCI estimator '{estimator}'; choose from: {', '.join(ESTIMATORS)}.")
    x_train, y_train, x_test, y_test = train_test(codes_train, factors_train, codes_test, factors_test, "DCI")
    n_factors = y_train.shape[1]
    n_classes = []
    for j in range(n_factors):
        k = len(np.unique(y_train[:, j]))
        if k < 2:
            raise DataError(f"factor {j} takes a single value in the {len(y_train)} DCI training rows; "
                            "a classifier needs at least two.")
        n_classes.append(k)

    fit, starts = _fit_factor, None
    if estimator == "rf":
        fit = _fit_forest
        x_train, y_train, x_test, y_test, starts = _rf_rows(x_train, y_train, x_test, y_test, discrete)
    elif estimator == "lasso":
        fit = _fit_lasso
        x_train, x_test, starts = _inputs(x_train.astype(np.float64), x_test.astype(np.float64), discrete, True)
    else:
        # The trees work in float32 whatever they are given; converting once here spares every worker a copy.
        x_train = np.ascontiguousarray(x_train, dtype=np.float32)
        x_test = np.ascontiguousarray(x_test, dtype=np.float32)
    # Largest factors first: the cost of a factor grows with its number of classes, and starting the
    # longest fits first balances the workers (longest-processing-time scheduling).
    order = sorted(range(n_factors), key=lambda j: (-n_classes[j], j))

    tasks = [(j, (x_train, y_train[:, j], x_test, y_test[:, j], factor_random_state(seed, j))) for j in order]
    # The forest's and the lasso's fits release the GIL: threads, no process start-up or copies.
    results = run_tasks(fit, tasks, jobs=jobs, progress=progress, threads=estimator != "gbt")

    importance = np.stack([results[j][0] for j in range(n_factors)], axis=1)
    if starts is not None:  # a latent's importance: the sum over its inputs (its one-hot columns)
        importance = np.add.reduceat(importance, starts, axis=0)
    train_acc = np.array([results[j][1] for j in range(n_factors)])
    test_acc = np.array([results[j][2] for j in range(n_factors)])
    return DCIResult(
        d=disentanglement(importance),
        c=completeness(importance),
        i=float(np.mean(test_acc)),
        i_train=float(np.mean(train_acc)),
        importance=importance,
        per_factor_test_acc=test_acc,
        per_factor_train_acc=train_acc,
    )


def _run(job: Job) -> tuple[dict, Any]:
    r = compute_dci(*job.split("dci_train", "dci_test"), jobs=job.jobs, seed=job.seed, progress=job.progress,
                    estimator=job.dci_estimator, discrete=job.discrete)
    values = {"dci_d": r.d, "dci_i": r.i, "dci_i_train": r.i_train, "dci_c": r.c}
    return {METRIC.key(k, job.dci_estimator): v for k, v in values.items()}, r


METRIC = Metric(
    "dci", "DCI", "DCI (Eastwood & Williams 2018)",
    {"dci_d": "DCI disentanglement (D)", "dci_i": "DCI informativeness (I, test accuracy)",
     "dci_i_train": "DCI informativeness (train accuracy)", "dci_c": "DCI completeness (C)"},
    {"dci_d": "D", "dci_i": "I", "dci_c": "C"}, ("dci_train", "dci_test"), _run, rows=("dci_train", "dci_test"),
    per_factor=True, estimators=ESTIMATORS)
