"""DCI by gradient-boosted trees (the paper's), a random forest (QLAE/Tripod) and lasso (Eastwood &
Williams): hand-computed answers, the keys each records, and tables that never mix them in one cell."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import grid_factors

from fqvae_cli.errors import UsageError
from fqvae_cli.metrics import METRICS, record, score_all
from fqvae_cli.metrics.dci import compute_dci

SIZES = {"dci_train": 600, "dci_test": 300, "infomec_n": 600}


def test_each_estimator_records_its_own_keys_and_gbt_keeps_the_papers():
    assert list(record("dci").keys) == ["dci_d", "dci_i", "dci_i_train", "dci_c"]
    assert list(record("dci", "rf").keys) == ["dci_rf_d", "dci_rf_i", "dci_rf_i_train", "dci_rf_c"]
    assert record("dci", "lasso").columns == {"dci_lasso_d": "D[lasso]", "dci_lasso_i": "I[lasso]",
                                              "dci_lasso_c": "C[lasso]"}
    assert record("mig", "rf") is METRICS["mig"]  # a metric without estimators is untouched
    with pytest.raises(UsageError) as err:
        record("dci", "svm")
    assert str(err.value) == "unknown DCI estimator 'svm'; choose from: gbt, rf, lasso."
    f = grid_factors((3, 4), 75)
    with pytest.raises(UsageError, match="unknown DCI estimator 'xgb'"):
        score_all(f, f, discrete=True, sizes=SIZES, dci_estimator="xgb")


def test_lasso_on_codes_equal_to_the_factors():
    # Balanced grid rows: each standardized factor t has mean 0 and variance 1 on the train and the test
    # rows, and the two factors are exactly uncorrelated. The lasso objective (1/2n)|t - Xw|^2 + a|w|_1
    # with standardized X then gives w_own = 1 - a = 0.98 and w_other = 0 (|cov| = 0 < a): R = 0.98 I,
    # D = C = 1; the prediction 0.98 t misses by 0.02 t, NRMSE = 0.02, I = 0.98 on both row sets.
    f = np.concatenate([grid_factors((3, 4), 50, seed=1), grid_factors((3, 4), 25, seed=2)])
    r = compute_dci(f[:600].astype(float), f[:600], f[600:].astype(float), f[600:], estimator="lasso")
    np.testing.assert_allclose(r.importance, [[0.98, 0.0], [0.0, 0.98]], atol=1e-9)
    assert r.d == pytest.approx(1.0, abs=1e-9) and r.c == pytest.approx(1.0, abs=1e-9)
    assert r.i == pytest.approx(0.98, abs=1e-9) and r.i_train == pytest.approx(0.98, abs=1e-9)
    # One-hot inputs for discrete codes: each latent's importance is the sum over its own columns.
    onehot = compute_dci(f[:600], f[:600], f[600:], f[600:], estimator="lasso", discrete=True)
    assert onehot.importance.shape == (2, 2)
    assert onehot.importance[0, 1] == 0.0 and onehot.importance[1, 0] == 0.0


def test_the_forest_is_seeded_splits_90_10_and_ignores_jobs():
    f = grid_factors((3, 4), 75)
    rng = np.random.default_rng(0)
    z = np.concatenate([f + rng.normal(0, 0.2, f.shape), rng.normal(size=(900, 1))], axis=1)
    one = compute_dci(z[:600], f[:600], z[600:], f[600:], estimator="rf", seed=3)
    two = compute_dci(z[:600], f[:600], z[600:], f[600:], estimator="rf", seed=3, jobs=2)
    assert (one.d, one.c, one.i, one.i_train) == (two.d, two.c, two.i, two.i_train)
    np.testing.assert_array_equal(one.importance, two.importance)
    other = compute_dci(z[:600], f[:600], z[600:], f[600:], estimator="rf", seed=4)
    assert not np.array_equal(one.importance, other.importance)
    # The 900 rows pooled and split 90/10: 90 test rows, so every test accuracy is a multiple of 1/90.
    assert all(abs(a * 90 - round(a * 90)) < 1e-9 for a in one.per_factor_test_acc)
    # Perfect discrete codes, one-hot: every factor is read back exactly; R has a row per latent.
    exact = compute_dci(f[:600], f[:600], f[600:], f[600:], estimator="rf", discrete=True)
    assert exact.i == 1.0 and exact.importance.shape == (2, 2)


def test_a_table_never_mixes_estimators_in_a_cell():
    from fqvae_cli.experiments import COLUMNS, paper_columns, resolve_run_config
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.tables import build_table

    assert paper_columns("rf") == (["dci_rf_d", "dci_rf_i", "dci_rf_c", "infom", "infoe", "infoc", "mse"],
                                   ["D[rf]", "I[rf]", "C[rf]", "InfoM", "InfoE", "InfoC", "MSE×10⁴"])
    reg = Registry()
    runs = []
    for seed in (0, 1):
        cfg = resolve_run_config("factorqvae", "synth3d", "quick", seed, {})
        run = reg.create_run(model="factorqvae", dataset="synth3d", profile="quick", seed=seed,
                             config=cfg.model_dump(mode="json"))
        reg.transition(run.id, "finished")
        reg.log_metrics(run.id, [(c, 0.5, 1, "eval", "paper") for c in COLUMNS])
        runs.append(run)
    # Only seed 0 is also scored by the forest: its cell holds that run alone, with the forest's numbers.
    reg.log_metrics(runs[0].id, [("dci_rf_d", 0.25, 1, "eval", "paper"), ("dci_rf_i", 0.75, 1, "eval", "paper"),
                                 ("dci_rf_c", 0.125, 1, "eval", "paper")])
    gbt = build_table(reg, "1", "quick", datasets=["synth3d"], rows=["factorqvae"])
    rf = build_table(reg, "1", "quick", datasets=["synth3d"], rows=["factorqvae"], dci_estimator="rf")
    assert gbt.cells[("synth3d", "factorqvae")].n == 2 and gbt.cells[("synth3d", "factorqvae")].mean[:3] == [0.5] * 3
    cell = rf.cells[("synth3d", "factorqvae")]
    assert cell.runs == [runs[0].short_id] and cell.mean[:4] == [0.25, 0.75, 0.125, 0.5]
    assert rf.titles[:3] == ["D[rf]", "I[rf]", "C[rf]"] and rf.dci_estimator == "rf"
    assert cell.published is None or cell.published[:3] == [None, None, None]  # the paper's numbers are gbt's
