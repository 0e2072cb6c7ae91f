"""Disentanglement metrics on plain arrays, one module each: DCI (dci.py), InfoMEC (infomec.py), MIG
(mig.py), SAP (sap.py), Modularity and Explicitness (modularity.py), IRS (irs.py), disentanglement_lib's
unsupervised scores (unsupervised.py), and the intervention scores FactorVAE (factor_vae.py) and BetaVAE
(beta_vae.py), which take a representation function instead of codes; UDR (udr.py) compares the codes of
several runs. Nothing here imports a model; codes.py goes from a trained model and a dataset to codes (and the
representation function), and computes the reported reconstruction MSE.

`METRICS` is the one metric table: each module defines its own record (`METRIC`, base.Metric: recorded
keys, table columns, the protocol sizes it reads from experiments.yaml `protocols`, the rows of (codes,
factors) it takes, its progress units and its runner), and a new metric is its module plus one entry
below. `prepare` checks a request once (names, sizes, arrays, settings) and `score` runs it;
`score_all` does both. Row convention: rows are independent samples; a metric with a test set fits on
its first `<metric>_train` rows and tests on the next `<metric>_test`; MIG and InfoMEC use their first
`<metric>_n` rows; every metric starts at row 0.

scikit-learn is imported only when a metric is computed, so importing this package stays light."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fqvae_cli.errors import ConfigError, DataError, UsageError
from fqvae_cli.metrics import beta_vae, dci, factor_vae, infomec, irs, mig, modularity, sap, unsupervised
from fqvae_cli.metrics.base import (
    Job,
    Metric,
    as_codes,
    as_factors,
    is_integer_valued,
    require_same_rows,
    require_varied,
    resolve_jobs,
)

__all__ = ["METRICS", "DEFAULT_METRICS", "DCI_ESTIMATORS", "Job", "Metric", "Scores", "prepare", "record", "score",
           "score_all"]

# Table 1 prints the per-pixel MSE (pixels on [0, 1]) multiplied by this.
MSE_SCALE = 1e4

# The metric table, in print order.
METRICS: dict[str, Metric] = {m.name: m for m in (
    dci.METRIC, infomec.METRIC, mig.METRIC, sap.METRIC, modularity.METRIC, factor_vae.METRIC, beta_vae.METRIC,
    irs.METRIC, unsupervised.METRIC,
)}

# How DCI's importances can be estimated, the paper's first (metrics/dci.py says how each is computed).
DCI_ESTIMATORS = dci.ESTIMATORS

# The FactorQVAE paper's Table 1: what `score` and `evaluate` compute unless asked for others.
DEFAULT_METRICS = ("dci", "infomec")
# Every protocol size, in METRICS order; those of the default metrics are required in every protocol.
PROTOCOL_SIZES = tuple(dict.fromkeys(s for m in METRICS.values() for s in m.sizes))
REQUIRED_SIZES = tuple(s for name in DEFAULT_METRICS for s in METRICS[name].sizes)


def record(name: str, dci_estimator: str | None = None) -> Metric:
    """A metric's record with the keys, labels and columns its estimator records (DCI's gbt: as listed)."""
    return METRICS[name].with_estimator(dci_estimator)


def parse_metrics(text: str | Sequence[str] | None, *, interventions: bool = True) -> tuple[str, ...]:
    """Metric names from 'dci,mig' (or a list of such), 'all', or None (the defaults), in METRICS order.
    'all' means every metric that can be computed here: without `interventions` (the model and the factor
    grid), every metric of codes and factors."""
    items = [text] if isinstance(text, str) else list(text or [])
    names = [n.strip().lower().replace("-", "_") for item in items for n in item.split(",") if n.strip()]
    if not names and items:
        raise UsageError(f"--metrics '{','.join(items)}' names no metric; give one or more of: "
                         f"{', '.join(METRICS)}, or all (leave it out for {','.join(DEFAULT_METRICS)}).")
    if not names:
        return DEFAULT_METRICS
    valid = ", ".join(METRICS)
    if "all" in names:
        return tuple(n for n, m in METRICS.items() if interventions or not m.intervenes)
    for n in names:
        if n not in METRICS:
            raise UsageError(f"unknown metric '{n}'; choose from: {valid}, or all.")
        if METRICS[n].intervenes and not interventions:
            raise UsageError(f"the {METRICS[n].short} holds factors fixed and encodes the images, so it needs the "
                             f"model and the dataset, not saved codes: use `fqvae evaluate RUN --metrics {n}`.")
    return tuple(n for n in METRICS if n in names)


def require_sizes(sizes: dict, metrics: Sequence[str], protocol: str | None = None) -> None:
    """Every size the metrics read is in `sizes` and at least 1, or one sentence saying which is not."""
    where = f"protocol '{protocol}'" if protocol else "the protocol"
    for name in metrics:
        for key in METRICS[name].sizes:
            value = sizes.get(key)
            if value is None:
                raise ConfigError(f"{where} has no size '{key}', which {METRICS[name].title} needs; add it "
                                  "under experiments.yaml `protocols`.")
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{key} must be at least 1, got {value!r}.")


def rows_needed(sizes: dict, metrics: Sequence[str]) -> int:
    """Rows of (codes, factors) the metrics take together (0 for intervention scores alone)."""
    return max([sum(sizes[k] for k in METRICS[n].rows) for n in metrics] + [0])


def protocol_rows(sizes: dict) -> int:
    """Rows a protocol draws: enough for every metric of codes it has sizes for, whichever are asked, so a
    metric's number never depends on which others are computed with it."""
    return rows_needed(sizes, [n for n, m in METRICS.items() if m.rows and all(k in sizes for k in m.sizes)])


def require_rows(n: int, sizes: dict, metrics: Sequence[str], name: str = "codes") -> None:
    """At least the rows each metric takes, or one sentence with the count and where it comes from."""
    for m in metrics:
        rows = METRICS[m].rows
        need = sum(sizes[k] for k in rows)
        if rows and n < need:
            parts = " + ".join(f"{k} {sizes[k]}" for k in rows)
            raise UsageError(f"{name} has {n} rows but {METRICS[m].short} needs {need} ({parts}).")


def score_steps(n_factors: int, metrics: Sequence[str] = DEFAULT_METRICS) -> int:
    """Progress units `score` advances for these metrics (each metric's record says how many)."""
    return sum(METRICS[m].progress_units(n_factors) for m in metrics)


@dataclass
class Scores:
    """What `score_all` returns: every recorded key of the chosen metrics (scores as floats, counts as
    ints) in METRICS order, and each metric's full result (matrices, per-factor numbers)."""

    values: dict[str, float | int]
    details: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    discrete: bool = False
    dci_estimator: str = "gbt"


def prepare(codes: Any, factors: Any, *, discrete: bool | None, sizes: dict,
            metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0, jobs: int = 1, n_neighbors: int = 3,
            factor_sizes: Sequence[int] | None = None, represent: Any = None,
            names: tuple[str, str] = ("codes", "factors"), protocol: str | None = None,
            interventions: bool = True, dci_estimator: str = "gbt") -> Job:
    """Check a request once, whole: the metric names, the protocol sizes they read, the settings, and the
    arrays (named `names` in messages) against every metric's rows; one sentence for the first problem.
    `discrete=None` scores integer-valued codes as discrete (`Job.inferred` says so); without
    `interventions`, a metric that needs the model is refused by name."""
    metrics = parse_metrics(metrics, interventions=interventions)
    require_sizes(sizes, metrics, protocol)
    METRICS["dci"].with_estimator(dci_estimator)  # an unknown estimator: one sentence
    if seed < 0:
        raise UsageError(f"seed must be non-negative, got {seed}.")
    resolve_jobs(jobs, 1)
    if n_neighbors < 1:
        raise UsageError(f"the number of neighbours must be at least 1, got {n_neighbors}.")
    intervening = [m for m in metrics if METRICS[m].intervenes]
    if intervening and (factor_sizes is None or represent is None):
        raise UsageError(f"{', '.join(intervening)} need the factor grid and a representation function.")
    z = s = None
    if len(intervening) < len(metrics):
        z = as_codes(codes, names[0])
        s = as_factors(factors, names[1])
        require_same_rows(z, s, *names)
        require_rows(len(z), sizes, metrics, names[0])
        require_varied(s, names[1])
        if "infomec" in metrics and n_neighbors >= sizes["infomec_n"]:
            raise UsageError(f"--neighbors {n_neighbors} (eval.n_neighbors) needs more than {n_neighbors} InfoMEC "
                             f"rows; the protocol gives it {sizes['infomec_n']} (infomec_n, --infomec-n).")
    inferred = discrete is None
    if inferred:
        discrete = z is not None and is_integer_valued(z)
    return Job(z, s, sizes, bool(discrete), seed, jobs, n_neighbors, None, factor_sizes, represent,
               metrics=metrics, inferred=inferred, dci_estimator=dci_estimator)


def score(job: Job, progress: Any = None) -> Scores:
    """Run a prepared request; `progress` (or None) is advanced by `job.units` in all."""
    job = replace(job, progress=progress)
    scores = Scores({}, {}, job.metrics, job.discrete, job.dci_estimator)
    for name in job.metrics:
        if progress is not None:
            progress.status(METRICS[name].short)
        values, detail = METRICS[name].run(job)
        for key, value in values.items():
            if not math.isfinite(value):  # never a NaN or an infinity in a table or the registry
                raise DataError(f"{METRICS[name].short} came out {value} ({key}) on these codes; nothing was "
                                "recorded.")
        scores.values.update(values)
        scores.details[name] = detail
    if progress is not None:
        progress.status("")
    return scores


def score_all(codes: Any, factors: Any, *, discrete: bool | None, sizes: dict,
              metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0, jobs: int = 1, n_neighbors: int = 3,
              progress: Any = None, factor_sizes: Sequence[int] | None = None, represent: Any = None,
              dci_estimator: str = "gbt") -> Scores:
    """The chosen metrics of one representation with a protocol's sizes (see the module docstring for
    which rows each takes): `prepare`, then `score`. The intervention scores (factor_vae, beta_vae) need
    `factor_sizes` and `represent` (factor combinations -> codes) and draw from numpy RandomState(seed),
    each its own."""
    job = prepare(codes, factors, discrete=discrete, sizes=sizes, metrics=metrics, seed=seed, jobs=jobs,
                  n_neighbors=n_neighbors, factor_sizes=factor_sizes, represent=represent,
                  dci_estimator=dci_estimator)
    return score(job, progress)
