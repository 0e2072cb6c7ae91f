"""Each metric of `score_all` on its rows: the slicing of the row convention and the recorded keys, in one
place (fqvae_cli.metrics names the metrics; each module computes one). A runner takes a `Job` and returns
(recorded values, the metric's full result)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def _dci(job: Job) -> tuple[dict, Any]:
    from fqvae_cli.metrics.dci import compute_dci

    r = compute_dci(*job.split("dci_train", "dci_test"), jobs=job.jobs, seed=job.seed, progress=job.progress)
    return {"dci_d": r.d, "dci_i": r.i, "dci_i_train": r.i_train, "dci_c": r.c}, r


def _infomec(job: Job) -> tuple[dict, Any]:
    from fqvae_cli.metrics.infomec import compute_infomec

    r = compute_infomec(*job.first("infomec_n"), discrete=job.discrete, n_neighbors=job.n_neighbors, seed=job.seed)
    job.advance()
    return {"infom": r.infom, "infoe": r.infoe, "infoc": r.infoc, "active_latents": r.n_active}, r


def _mig(job: Job) -> tuple[dict, Any]:
    from fqvae_cli.metrics.mig import compute_mig

    r = compute_mig(*job.first("mig_n"))
    job.advance()
    return {"mig": r.mig}, r


def _sap(job: Job) -> tuple[dict, Any]:
    from fqvae_cli.metrics.sap import compute_sap

    r = compute_sap(*job.split("sap_train", "sap_test"), jobs=job.jobs, progress=job.progress)
    return {"sap": r.sap}, r


def _modularity(job: Job) -> tuple[dict, Any]:
    from fqvae_cli.metrics.modularity import compute_modularity

    r = compute_modularity(*job.split("modularity_train", "modularity_test"), jobs=job.jobs, progress=job.progress)
    return {"modularity": r.modularity, "explicitness": r.explicitness,
            "explicitness_train": r.explicitness_train}, r


def _factor_vae(job: Job) -> tuple[dict, Any]:
    from fqvae_cli.metrics.factor_vae import compute_factor_vae

    sz = job.sizes
    r = compute_factor_vae(job.factor_sizes, job.represent, np.random.RandomState(job.seed),
                           batch_size=sz["factor_vae_batch"], num_train=sz["factor_vae_train"],
                           num_eval=sz["factor_vae_eval"], num_variance_estimate=sz["factor_vae_variance"],
                           progress=job.progress)
    return {"factor_vae": r.score, "factor_vae_train": r.train_accuracy, "factor_vae_active": r.n_active}, r


def _beta_vae(job: Job) -> tuple[dict, Any]:
    from fqvae_cli.metrics.beta_vae import compute_beta_vae

    sz = job.sizes
    r = compute_beta_vae(job.factor_sizes, job.represent, np.random.RandomState(job.seed),
                         batch_size=sz["beta_vae_batch"], num_train=sz["beta_vae_train"],
                         num_eval=sz["beta_vae_eval"], progress=job.progress)
    return {"beta_vae": r.score, "beta_vae_train": r.train_accuracy}, r


# The same names as fqvae_cli.metrics.METRICS (a test checks they agree, keys included).
RUNNERS: dict[str, Callable[[Job], tuple[dict, Any]]] = {
    "dci": _dci, "infomec": _infomec, "mig": _mig, "sap": _sap, "modularity": _modularity,
    "factor_vae": _factor_vae, "beta_vae": _beta_vae,
}
