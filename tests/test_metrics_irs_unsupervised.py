"""IRS and disentanglement_lib's unsupervised scores on codes whose answers are computed by hand, and their
degenerate inputs (constant latents, singular covariances, too few latents) as sentences, never NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import grid_factors

from fqvae_cli.errors import DataError
from fqvae_cli.metrics import score_all
from fqvae_cli.metrics.irs import compute_irs
from fqvae_cli.metrics.unsupervised import compute_unsupervised


def test_irs_of_codes_equal_to_the_factors_is_one():
    f = grid_factors((3, 4), 75)
    r = compute_irs(f.astype(float), f)
    # Latent 0 is constant within every group of factor 0: deviation 0, score 1. Within a group of factor 1
    # it takes 0, 1, 2 around the mean 1: the 99th percentile of |z - 1| is 1 = its max deviation, score 0.
    np.testing.assert_array_equal(r.matrix, [[1.0, 0.0], [0.0, 1.0]])
    assert r.irs == 1.0 and r.n_active == 2


def test_irs_of_a_latent_mixing_two_factors():
    # z = f0 + 0.5 f1, f0 in {0, 1, 2}, f1 in {0, 1}, balanced: E z = 1.25, max |z - E z| = 1.25 (z = 0 or 2.5).
    # Factor 0 fixed at v: z in {v, v + .5} around v + .25, deviations .25 -> 1 - .25 / 1.25 = 0.8.
    # Factor 1 fixed at w: z in {0, 1, 2} + w/2 around 1 + w/2, deviations {1, 0, 1}, 99th percentile 1
    # -> 1 - 1 / 1.25 = 0.2. IRS(z) = max = 0.8; a constant second latent is dropped.
    f = grid_factors((3, 2), 50)
    z = np.c_[f[:, 0] + 0.5 * f[:, 1], np.full(len(f), 7.0)]
    r = compute_irs(z, f)
    np.testing.assert_allclose(r.matrix, [[0.8, 0.2]], atol=1e-12)
    assert r.irs == pytest.approx(0.8, abs=1e-12) and r.n_active == 1
    assert compute_irs(np.zeros((300, 2)), f).irs == 0.0  # no latent varies: 0, as the reference


def _two_latents(reps: int = 25):
    f = grid_factors((2, 2), reps)
    a, b = 2.0 * f[:, 0] - 1, 2.0 * f[:, 1] - 1  # independent, balanced +-1
    return f, np.c_[a, a + b]


def test_unsupervised_scores_by_hand():
    # S = s [[1, 1], [1, 2]] with s = n / (n - 1) (np.cov's ddof 1).
    # TC = 1/2 (log s + log 2s - log s^2) = 1/2 log 2.
    # S * diag(S) per row = s^2 [[1, 1], [2, 4]], tr sqrt = s sqrt(5 + 2 sqrt 2) (tr 5, det 2), so
    # W = 2 * 3s - 2 s sqrt(5 + 2 sqrt 2) and W / tr S = (6 - 2 sqrt(5 + 2 sqrt 2)) / 3.
    # MI: I(a; a + b) = H(a + b) - H(b) = 1.5 - 1 bits = 0.5 ln 2 nats in both directions.
    f, z = _two_latents()
    n = len(z)
    s = n / (n - 1)
    r = compute_unsupervised(z)
    assert r.total_correlation == pytest.approx(0.5 * math.log(2), abs=1e-12)
    assert r.wasserstein == pytest.approx(s * (6 - 2 * math.sqrt(5 + 2 * math.sqrt(2))), abs=1e-12)
    assert r.wasserstein_norm == pytest.approx((6 - 2 * math.sqrt(5 + 2 * math.sqrt(2))) / 3, abs=1e-12)
    assert r.mutual_info == pytest.approx(0.5 * math.log(2), abs=1e-12)
    # A constant third latent: left out of the Gaussian scores (the reference's would be NaN), kept in the
    # MI average as the reference keeps it: (2 * 0.5 ln 2) over 3 * 3 - 3 pairs.
    r3 = compute_unsupervised(np.c_[z, np.ones(n)])
    assert r3.total_correlation == r.total_correlation and r3.wasserstein == r.wasserstein
    assert r3.mutual_info == pytest.approx(math.log(2) / 6, abs=1e-12)


def test_unsupervised_degenerate_codes_are_sentences():
    f, z = _two_latents()
    with pytest.raises(DataError) as err:
        compute_unsupervised(np.c_[z[:, 0], z[:, 0]])
    assert str(err.value) == ("the codes' covariance is singular (a latent is an exact linear combination of "
                              "others), so their Gaussian total correlation is infinite.")
    with pytest.raises(DataError) as err:
        compute_unsupervised(np.c_[z[:, 0], np.zeros(len(z))])
    assert str(err.value) == ("the unsupervised scores compare latents with each other, so they need at least "
                              "two that vary; the codes have 1 of 2 in 100 rows.")
    with pytest.raises(DataError, match="NaN or infinite"):
        compute_unsupervised(np.c_[z, np.full(len(z), np.nan)])


def test_both_through_score_all_on_the_first_mig_n_rows():
    f, z = _two_latents(50)  # 200 rows; the first 100 are scored
    sizes = {"dci_train": 1, "dci_test": 1, "infomec_n": 1, "mig_n": 100}
    out = score_all(z, f, discrete=False, sizes=sizes, metrics=["irs", "unsupervised"])
    assert list(out.values) == ["irs", "irs_active", "gaussian_total_correlation", "gaussian_wasserstein_correlation",
                                "gaussian_wasserstein_correlation_norm", "mutual_info_score"]
    assert out.values["irs"] == compute_irs(z[:100], f[:100]).irs and out.values["irs_active"] == 2
    assert out.values["mutual_info_score"] == compute_unsupervised(z[:100]).mutual_info
