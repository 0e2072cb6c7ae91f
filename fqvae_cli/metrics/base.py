"""What every metric shares: its record in the metric table (`Metric`), what it reads (`Job`), the
checks of the (codes, factors) arrays it takes, and the per-factor fits in worker processes.

A metric is one module defining `METRIC = Metric(...)`: its name, recorded keys, table columns,
protocol sizes, progress units and runner, all in one place; fqvae_cli.metrics lists the modules.

Array checks raise a DataError whose message is one sentence naming the array, so the CLI can show it
as is. `name` lets the caller say where an array came from (for example a file name).

Mutual information: the 20-bin histogram discretiser and the plug-in MI that MIG, Modularity, IRS and the
unsupervised scores share (below).

Parallel fits: a metric that fits one classifier per factor (DCI, SAP, Explicitness) hands `run_tasks` a
list of (key, args) and gets {key: result} back. Every task's randomness comes from its own arguments
(a seed derived from the factor index), never from the order in which workers pick tasks up: then
`jobs` changes the time and not one bit of the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError, UsageError


@dataclass(frozen=True)
class Job:
    """Everything a metric may read: the rows (None when only intervention scores run), the protocol
    sizes and the settings; `factor_sizes` and `represent` for the intervention scores."""

    z: np.ndarray | None
    s: np.ndarray | None
    sizes: dict
    discrete: bool
    seed: int
    jobs: int
    n_neighbors: int
    progress: Any
    factor_sizes: Sequence[int] | None
    represent: Any
    metrics: tuple[str, ...] = ()  # the metrics asked, in METRICS order
    inferred: bool = False  # `discrete` was inferred from the codes, not given
    dci_estimator: str = "gbt"  # what DCI's importances come from (dci.ESTIMATORS)

    @property
    def n_factors(self) -> int:
        return self.s.shape[1] if self.s is not None else len(self.factor_sizes or ())

    def split(self, train: str, test: str) -> tuple[np.ndarray, ...]:
        """(train codes, train factors, test codes, test factors): the first sizes[train] rows, then the
        next sizes[test]."""
        a, b = self.sizes[train], self.sizes[train] + self.sizes[test]
        return self.z[:a], self.s[:a], self.z[a:b], self.s[a:b]

    def first(self, n: str) -> tuple[np.ndarray, np.ndarray]:
        return self.z[:self.sizes[n]], self.s[:self.sizes[n]]

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance()


@dataclass(frozen=True)
class Metric:
    """One metric as the rest of fqvae sees it: one entry of fqvae_cli.metrics.METRICS."""

    name: str  # what --metrics takes
    short: str  # how messages and progress name it
    title: str  # with its reference
    keys: dict[str, str]  # recorded key -> label, in print order
    columns: dict[str, str]  # key -> short column title in tables
    sizes: tuple[str, ...]  # protocol sizes it reads
    run: Callable[[Job], tuple[dict, Any]]  # Job -> (recorded values, the metric's full result)
    rows: tuple[str, ...] = ()  # the sizes whose sum is the rows of (codes, factors) it takes
    intervenes: bool = False  # needs the model and the factor grid instead of rows
    counts: tuple[str, ...] = ()  # keys that are counts, not scores
    units: int = 1  # progress units its runner advances (per factor when `per_factor`)
    per_factor: bool = False
    estimators: tuple[str, ...] = ()  # the ways it can be computed, the default first (DCI's)

    def progress_units(self, n_factors: int) -> int:
        return n_factors * self.units if self.per_factor else self.units

    def key(self, key: str, estimator: str | None) -> str:
        """A recorded key as `estimator` writes it: the default's keys as they are ('dci_d'), another's
        with its name after the metric's ('dci_rf_d'), so rows of different estimators never share a name."""
        if not estimator or not self.estimators or estimator == self.estimators[0]:
            return key
        prefix = f"{self.name}_"
        return f"{prefix}{estimator}_{key[len(prefix):]}" if key.startswith(prefix) else f"{key}_{estimator}"

    def with_estimator(self, estimator: str | None) -> Metric:
        """This record with the keys, labels and column titles of `estimator`."""
        if not estimator or not self.estimators or estimator == self.estimators[0]:
            return self
        if estimator not in self.estimators:
            raise UsageError(f"unknown {self.short} estimator '{estimator}'; choose from: "
                             f"{', '.join(self.estimators)}.")
        return replace(self, keys={self.key(k, estimator): f"{v} [{estimator}]" for k, v in self.keys.items()},
                       columns={self.key(k, estimator): f"{v}[{estimator}]" for k, v in self.columns.items()},
                       counts=tuple(self.key(k, estimator) for k in self.counts))


_NUMERIC_KINDS = "biuf"


def as_matrix(a: object, name: str) -> np.ndarray:
    """A non-empty 2-D numeric array (rows = samples, columns = latents or factors)."""
    arr = np.asarray(a)
    if arr.dtype.kind == "c":
        raise DataError(f"{name} holds complex numbers (dtype {arr.dtype}); the metrics take real numbers.")
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(f"{name} must hold numbers, but its dtype is {arr.dtype}.")
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (samples x columns), but it has shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape}).")
    return arr


# The DCI classifiers (scikit-learn's trees) work in float32: a code beyond its range becomes infinite there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_codes(a: object, name: str = "codes") -> np.ndarray:
    """A 2-D numeric array of finite values within float32's range; booleans become 0/1 integers (the
    numbers numpy would convert them to anyway, without its warnings)."""
    arr = as_matrix(a, name)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{name} contains NaN or infinite values (the first at row {row}, column {col}).")
        huge = np.abs(arr) > FLOAT32_MAX
        if huge.any():
            row, col = np.argwhere(huge)[0]
            raise DataError(f"{name} holds {arr[row, col]:.3g} at row {row}, column {col}, beyond float32's range "
                            f"(±{FLOAT32_MAX:.3g}) in which the metrics are computed; rescale the codes.")
    return arr


# The most values one factor may take. Every metric treats a factor as a class label, with a classifier (or
# an entropy) over its values; the largest factor of the shipped datasets has 40 values (Cars3D's object
# has 183). Far more than that is a continuous variable or an identifier, on which the classifiers spend
# minutes for a meaningless number.
MAX_FACTOR_VALUES = 256


def as_factors(a: object, name: str = "factors") -> np.ndarray:
    """Factor codes as int64: finite, integer-valued and non-negative (label indices, as datasets store them)."""
    arr = as_matrix(a, name)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{name} must hold integer factor codes, but row {row}, column {col} "
                            f"is {arr[row, col]!r}.")
    if (arr < 0).any():
        row, col = np.argwhere(arr < 0)[0]
        raise DataError(f"{name} must hold non-negative factor codes, but row {row}, column {col} "
                        f"is {arr[row, col]!r}.")
    arr = arr.astype(np.int64)
    for j in range(arr.shape[1]):
        k = len(np.unique(arr[:, j]))
        if k > MAX_FACTOR_VALUES:
            raise DataError(f"factor {j} of {name} takes {k:,} distinct values, more than the "
                            f"{MAX_FACTOR_VALUES} a factor may take; factors are class labels (bin a continuous "
                            "variable first).")
    return arr


def require_varied(factors: np.ndarray, name: str = "factors") -> None:
    """Every factor column takes at least two values (a classifier and an entropy need two)."""
    for j in range(factors.shape[1]):
        col = factors[:, j]
        if (col == col[0]).all():
            raise DataError(f"factor {j} of {name} takes a single value ({col[0]}); "
                            "every factor needs at least two values.")


def require_same_rows(codes: np.ndarray, factors: np.ndarray,
                      codes_name: str = "codes", factors_name: str = "factors") -> None:
    if codes.shape[0] != factors.shape[0]:
        raise DataError(f"{codes_name} has {codes.shape[0]} rows but {factors_name} has "
                        f"{factors.shape[0]}; each row must pair one sample's codes with its factors.")


def train_test(codes_train: object, factors_train: object, codes_test: object, factors_test: object,
               metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(codes, factors) of a metric's training rows and of its test rows, each checked as above and
    against the other: (x_train, y_train, x_test, y_test)."""
    x_train = as_codes(codes_train, f"the {metric} training codes")
    x_test = as_codes(codes_test, f"the {metric} test codes")
    y_train = as_factors(factors_train, f"the {metric} training factors")
    y_test = as_factors(factors_test, f"the {metric} test factors")
    require_same_rows(x_train, y_train, f"the {metric} training codes", f"the {metric} training factors")
    require_same_rows(x_test, y_test, f"the {metric} test codes", f"the {metric} test factors")
    if x_train.shape[1] != x_test.shape[1] or y_train.shape[1] != y_test.shape[1]:
        raise DataError(f"the {metric} training and test arrays have different numbers of columns.")
    return x_train, y_train, x_test, y_test


def is_integer_valued(codes: np.ndarray) -> bool:
    """True for integer dtypes and for floats that are all whole numbers (codebook indices saved as float)."""
    if codes.dtype.kind in "biu":
        return True
    return bool(np.all(codes == np.round(codes)))


# Parallel per-factor fits.
def resolve_jobs(jobs: int, n_tasks: int) -> int:
    """Worker processes for `n_tasks` tasks: `jobs` (-1: all cores), never more than there are tasks."""
    from joblib import effective_n_jobs

    if jobs == 0 or jobs < -1:
        raise UsageError(f"jobs must be a positive number of processes or -1 for all cores, got {jobs}.")
    if jobs == -1:
        jobs = effective_n_jobs(-1)
    return max(1, min(jobs, max(n_tasks, 1)))


def task_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed from (seed, keys...) alone, never from the order in which tasks run."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple[Any, tuple]], *, jobs: int = 1,
              progress: Any = None, threads: bool = False) -> dict[Any, Any]:
    """{key: fn(*args)} for each (key, args) in `tasks`, in `jobs` processes (or threads, for work that
    releases the GIL: no process start-up, no copies of the arrays); `progress` (or None) is advanced
    once per finished task. Tasks start in the order given: put the longest first."""
    n_jobs = resolve_jobs(jobs, len(tasks))
    if n_jobs == 1:
        results = {}
        for key, args in tasks:
            results[key] = fn(*args)
            if progress is not None:
                progress.advance()
        return results
    from joblib import Parallel, delayed

    results = {}
    backend = "threading" if threads else None
    for key, value in Parallel(n_jobs=n_jobs, backend=backend, return_as="generator_unordered")(
            delayed(_keyed)(fn, key, args) for key, args in tasks):
        results[key] = value
        if progress is not None:
            progress.advance()
    return results


def _keyed(fn: Callable[..., Any], key: Any, args: tuple) -> tuple[Any, Any]:
    return key, fn(*args)


# The histogram discretiser and the plug-in mutual information of MIG, Modularity, IRS and the unsupervised
# scores, as disentanglement_lib computes them (evaluation/metrics/utils.py `_histogram_discretize`,
# `discrete_mutual_info`, `discrete_entropy`).
#
# Each latent is cut into `num_bins` equal-width bins over its own [min, max] on the rows given, with
# numpy's histogram edges: a value's bin is `np.digitize(value, edges[:-1])`, 1..num_bins, so the maximum
# lands in the last bin. Integer codes go through the same discretiser: a latent with fewer than
# num_bins + 1 distinct consecutive values keeps one bin per value, a wider one has neighbouring values
# merged (0..39 into 20 bins of two values each), exactly as the reference does with the same array. A
# constant latent falls in a single bin (no information).
#
# MI is sklearn's `mutual_info_score` (nats) between each binned latent and each factor's codes; the
# factor entropy is `mutual_info_score(s, s)`.

# disentanglement_lib's gin configs: discretizer.num_bins = 20 (MIG, Modularity, IRS, unsupervised scores).
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
