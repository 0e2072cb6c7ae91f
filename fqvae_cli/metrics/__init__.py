"""Disentanglement metrics on plain arrays, one module each: DCI (dci.py), InfoMEC (infomec.py), MIG
(mig.py), SAP (sap.py), Modularity and Explicitness (modularity.py), and the intervention scores
FactorVAE (factor_vae.py) and BetaVAE (beta_vae.py), which take a representation function instead of
codes. Nothing here imports a model; codes.py goes from a trained model and a dataset to codes (and the
representation function), and computes the reported reconstruction MSE.

`METRICS` names every metric once: its recorded keys, the protocol sizes it reads (experiments.yaml
`protocols`, the only home of the numbers) and the rows of (codes, factors) it takes. `score_all` is the
one entry point: it runs the chosen metrics on one set of rows. Row convention: rows are independent
samples; a metric with a test set fits on its first `<metric>_train` rows and tests on the next
`<metric>_test`; MIG and InfoMEC use their first `<metric>_n` rows; every metric starts at row 0.

scikit-learn is imported only when a metric is computed, so importing this package stays light."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fqvae_cli.errors import ConfigError, UsageError
from fqvae_cli.metrics.checks import as_codes, as_factors, require_same_rows

# Table 1 prints the per-pixel MSE (pixels on [0, 1]) multiplied by this.
MSE_SCALE = 1e4


@dataclass(frozen=True)
class Metric:
    """One metric as the rest of fqvae sees it."""

    name: str  # what --metrics takes
    short: str  # how messages and progress name it
    title: str  # with its reference
    keys: dict[str, str]  # recorded key -> label, in print order
    columns: dict[str, str]  # key -> short column title in tables
    sizes: tuple[str, ...]  # protocol sizes it reads
    rows: tuple[str, ...] = ()  # the sizes whose sum is the rows of (codes, factors) it takes
    intervenes: bool = False  # needs the model and the factor grid instead of rows
    counts: tuple[str, ...] = ()  # keys that are counts, not scores


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("dci", "DCI", "DCI (Eastwood & Williams 2018)",
           {"dci_d": "DCI disentanglement (D)", "dci_i": "DCI informativeness (I, test accuracy)",
            "dci_i_train": "DCI informativeness (train accuracy)", "dci_c": "DCI completeness (C)"},
           {"dci_d": "D", "dci_i": "I", "dci_c": "C"}, ("dci_train", "dci_test"), ("dci_train", "dci_test")),
    Metric("infomec", "InfoMEC", "InfoMEC (Hsu et al. 2023)",
           {"infom": "InfoM", "infoe": "InfoE", "infoc": "InfoC", "active_latents": "active latents"},
           {"infom": "InfoM", "infoe": "InfoE", "infoc": "InfoC"}, ("infomec_n",), ("infomec_n",),
           counts=("active_latents",)),
    Metric("mig", "MIG", "MIG (Chen et al. 2018)", {"mig": "MIG"}, {"mig": "MIG"}, ("mig_n",), ("mig_n",)),
    Metric("sap", "SAP", "SAP (Kumar et al. 2018)", {"sap": "SAP"}, {"sap": "SAP"}, ("sap_train", "sap_test"),
           ("sap_train", "sap_test")),
    Metric("modularity", "Modularity and Explicitness", "Modularity and Explicitness (Ridgeway & Mozer 2018)",
           {"modularity": "Modularity", "explicitness": "Explicitness (test ROC-AUC)",
            "explicitness_train": "Explicitness (train ROC-AUC)"},
           {"modularity": "Modularity", "explicitness": "Explicitness"}, ("modularity_train", "modularity_test"),
           ("modularity_train", "modularity_test")),
    Metric("factor_vae", "FactorVAE score", "FactorVAE score (Kim & Mnih 2018)",
           {"factor_vae": "FactorVAE score (eval accuracy)", "factor_vae_train": "FactorVAE score (train accuracy)",
            "factor_vae_active": "FactorVAE active latents"},
           {"factor_vae": "FactorVAE score"},
           ("factor_vae_batch", "factor_vae_train", "factor_vae_eval", "factor_vae_variance"), intervenes=True,
           counts=("factor_vae_active",)),
    Metric("beta_vae", "BetaVAE score", "BetaVAE score (Higgins et al. 2017)",
           {"beta_vae": "BetaVAE score (eval accuracy)", "beta_vae_train": "BetaVAE score (train accuracy)"},
           {"beta_vae": "BetaVAE score"}, ("beta_vae_batch", "beta_vae_train", "beta_vae_eval"), intervenes=True),
)}

# The FactorQVAE paper's Table 1: what `score` and `evaluate` compute unless asked for others.
DEFAULT_METRICS = ("dci", "infomec")
# Every protocol size, in METRICS order; those of the default metrics are required in every protocol.
PROTOCOL_SIZES = tuple(s for m in METRICS.values() for s in m.sizes)
REQUIRED_SIZES = tuple(s for name in DEFAULT_METRICS for s in METRICS[name].sizes)


def parse_metrics(text: str | Sequence[str] | None, *, interventions: bool = True) -> tuple[str, ...]:
    """Metric names from 'dci,mig' (or a list of such), 'all', or None (the defaults), in METRICS order.
    'all' means every metric that can be computed here: without `interventions` (the model and the factor
    grid), every metric of codes and factors."""
    items = [text] if isinstance(text, str) else list(text or [])
    names = [n.strip().lower().replace("-", "_") for item in items for n in item.split(",") if n.strip()]
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
    """Progress units `score_all` advances: one per factor for the per-factor fits (DCI, SAP,
    Explicitness), one for InfoMEC and MIG, three for FactorVAE, two for BetaVAE."""
    per = {"dci": n_factors, "infomec": 1, "mig": 1, "sap": n_factors, "modularity": n_factors,
           "factor_vae": 3, "beta_vae": 2}
    return sum(per[m] for m in metrics)


@dataclass
class Scores:
    """What `score_all` returns: every recorded key of the chosen metrics (scores as floats, counts as
    ints) in METRICS order, and each metric's full result (matrices, per-factor numbers)."""

    values: dict[str, float | int]
    details: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    discrete: bool = False


def score_all(codes: Any, factors: Any, *, discrete: bool, sizes: dict, metrics: Sequence[str] = DEFAULT_METRICS,
              seed: int = 0, jobs: int = 1, n_neighbors: int = 3, progress: Any = None,
              factor_sizes: Sequence[int] | None = None, represent: Any = None) -> Scores:
    """The chosen metrics of one representation with a protocol's sizes (see the module docstring for
    which rows each takes). The intervention scores (factor_vae, beta_vae) need `factor_sizes` and
    `represent` (factor combinations -> codes) and draw from numpy RandomState(seed), each its own."""
    from fqvae_cli.metrics.run import RUNNERS, Job

    metrics = parse_metrics(list(metrics))
    require_sizes(sizes, metrics)
    if seed < 0:
        raise UsageError(f"seed must be non-negative, got {seed}.")
    intervening = [m for m in metrics if METRICS[m].intervenes]
    if intervening and (factor_sizes is None or represent is None):
        raise UsageError(f"{', '.join(intervening)} need the factor grid and a representation function.")
    z = s = None
    if len(intervening) < len(metrics):
        z = as_codes(codes)
        s = as_factors(factors)
        require_same_rows(z, s)
        require_rows(len(z), sizes, metrics)
    job = Job(z, s, sizes, bool(discrete), seed, jobs, n_neighbors, progress, factor_sizes, represent)
    scores = Scores({}, {}, metrics, bool(discrete))
    for name in metrics:
        if progress is not None:
            progress.status(METRICS[name].short)
        values, detail = RUNNERS[name](job)
        scores.values.update(values)
        scores.details[name] = detail
    if progress is not None:
        progress.status("")
    return scores
