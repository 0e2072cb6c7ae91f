"""Disentanglement metrics on plain arrays: DCI (dci.py), InfoMEC (infomec.py). Nothing here imports a
model; `score_all` runs a protocol on (codes, factors) rows. The protocols' sample sizes live in
experiments.yaml (`protocols`, read by fqvae_cli.evaluation.protocol_sizes). codes.py goes from a
trained model and a dataset to codes, and computes the reported reconstruction MSE.

scikit-learn is imported only when a metric is computed, so importing this package stays light."""

from __future__ import annotations

from typing import Any

from fqvae_cli.errors import UsageError
from fqvae_cli.metrics.checks import as_codes, as_factors, require_same_rows

# Table 1 prints the per-pixel MSE (pixels on [0, 1]) multiplied by this.
MSE_SCALE = 1e4

# The keys `fqvae score --json` prints and the evaluation records, in this order.
SCORE_KEYS = ("dci_d", "dci_i", "dci_i_train", "dci_c", "infom", "infoe", "infoc", "active_latents")


def score_steps(n_factors: int) -> int:
    """Progress units `score_all` advances: one per DCI factor, then one for InfoMEC."""
    return n_factors + 1


def rows_needed(dci_train: int, dci_test: int, infomec_n: int) -> int:
    return max(dci_train + dci_test, infomec_n)


def score_all(codes: Any, factors: Any, discrete: bool, dci_train: int, dci_test: int, infomec_n: int,
              seed: int = 0, jobs: int = 1, n_neighbors: int = 3, progress: Any = None) -> dict[str, Any]:
    """DCI and InfoMEC of one representation with a protocol's sample sizes.

    Rows are independent samples: DCI trains on the first `dci_train` rows and tests on the next
    `dci_test`; InfoMEC uses the first `infomec_n` rows. Returns the SCORE_KEYS (floats, and
    active_latents as a count) plus `importance` (latents x factors), `nmi` (factors x latents),
    `active` (mask), `per_factor_test_acc`, `per_factor_train_acc`, `per_factor_infoe` and `discrete`."""
    from fqvae_cli.metrics.dci import compute_dci  # heavy: sklearn; training imports this package
    from fqvae_cli.metrics.infomec import compute_infomec  # heavy: sklearn, as above

    for name, value in (("dci_train", dci_train), ("dci_test", dci_test), ("infomec_n", infomec_n)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}.")
    z = as_codes(codes)
    s = as_factors(factors)
    require_same_rows(z, s)
    need = rows_needed(dci_train, dci_test, infomec_n)
    if len(z) < need:
        raise UsageError(f"the protocol needs {need} rows (DCI {dci_train} + {dci_test}, InfoMEC {infomec_n}) "
                         f"but there are only {len(z)}.")

    if progress is not None:
        progress.status("DCI")
    dci = compute_dci(z[:dci_train], s[:dci_train], z[dci_train:dci_train + dci_test],
                      s[dci_train:dci_train + dci_test], jobs=jobs, seed=seed, progress=progress)
    if progress is not None:
        progress.status("InfoMEC")
    info = compute_infomec(z[:infomec_n], s[:infomec_n], discrete=discrete, n_neighbors=n_neighbors, seed=seed)
    if progress is not None:
        progress.advance()
        progress.status("")
    return {
        "dci_d": dci.d,
        "dci_i": dci.i,
        "dci_i_train": dci.i_train,
        "dci_c": dci.c,
        "infom": info.infom,
        "infoe": info.infoe,
        "infoc": info.infoc,
        "active_latents": info.n_active,
        "importance": dci.importance,
        "nmi": info.nmi,
        "active": info.active,
        "per_factor_test_acc": dci.per_factor_test_acc,
        "per_factor_train_acc": dci.per_factor_train_acc,
        "per_factor_infoe": info.per_factor_infoe,
        "discrete": bool(discrete),
    }
