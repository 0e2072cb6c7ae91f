"""Degenerate and hostile metric inputs: each refused with one sentence naming the problem, or scored
with the exact answer and no warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import grid_factors

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics import parse_metrics, score_all

SIZES = {"dci_train": 300, "dci_test": 100, "infomec_n": 300, "mig_n": 400, "sap_train": 300, "sap_test": 100,
         "modularity_train": 300, "modularity_test": 100}
CODE_METRICS = ["dci", "infomec", "mig", "sap", "modularity"]


def test_metrics_naming_nothing_is_refused_not_the_defaults():
    for text in (",", " , ,", ""):
        with pytest.raises(UsageError) as err:
            parse_metrics(text)
        assert str(err.value).startswith(f"--metrics '{text}' names no metric; give one or more of: dci, infomec")
    assert parse_metrics(None) == ("dci", "infomec")


def test_boolean_codes_score_as_their_0_1_integers_without_warnings():
    f = grid_factors((3, 4), 34)[:400]
    z = np.stack([f[:, 0] > 0, f[:, 1] > 1, f[:, 1] % 2 == 0], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning (numpy's bool conversion) fails the test
        as_bool = score_all(z, f, discrete=True, sizes=SIZES, metrics=CODE_METRICS)
    as_int = score_all(z.astype(np.int64), f, discrete=True, sizes=SIZES, metrics=CODE_METRICS)
    assert as_bool.values == as_int.values


def test_a_factor_with_too_many_values_is_refused():
    rng = np.random.default_rng(0)
    f = grid_factors((3, 4), 34)[:400]
    huge = np.concatenate([f, (rng.permutation(400) * 10**15)[:, None]], axis=1)  # 400 distinct huge labels
    with pytest.raises(DataError) as err:
        score_all(f.astype(float), huge, discrete=False, sizes=SIZES)
    assert str(err.value) == ("factor 2 of factors takes 400 distinct values, more than the 256 a factor may take; "
                              "factors are class labels (bin a continuous variable first).")
    ok = np.concatenate([f, (np.arange(400) % 256)[:, None]], axis=1)  # 256 values: at the limit, accepted
    score_all(f.astype(float), ok, discrete=False, sizes=SIZES, metrics=["mig"])


def test_complex_codes_are_named_complex():
    f = grid_factors((3, 4), 34)[:400]
    with pytest.raises(DataError) as err:
        score_all(f + 1j, f, discrete=False, sizes=SIZES)
    assert str(err.value) == "codes holds complex numbers (dtype complex128); the metrics take real numbers."


def test_constant_codes_score_exactly_zero_dci():
    f = grid_factors((3, 4), 34)[:400]
    out = score_all(np.zeros((400, 3)), f, discrete=False, sizes=SIZES, metrics=["dci"])
    # No latent is used by any tree: R is all zero, every row and column uniform, D = C = 0 exactly.
    assert out.values["dci_d"] == 0.0 and out.values["dci_c"] == 0.0


def test_a_metric_that_comes_out_nan_is_a_sentence_never_a_number(monkeypatch):
    from dataclasses import replace

    from fqvae_cli import metrics

    monkeypatch.setitem(metrics.METRICS, "mig", replace(metrics.METRICS["mig"],
                                                        run=lambda job: ({"mig": float("nan")}, None)))
    f = grid_factors((3, 4), 34)[:400]
    with pytest.raises(DataError) as err:
        score_all(f, f, discrete=True, sizes=SIZES, metrics=["mig"])
    assert str(err.value) == "MIG came out nan (mig) on these codes; nothing was recorded."
