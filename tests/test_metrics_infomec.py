"""InfoMEC: the scores from hand-made NMI matrices, then the estimators on representations whose answer
is known. Factors are drawn as a balanced grid (every combination equally often), so the plug-in mutual
information between different factors, or a factor and another factor's copy, is exactly zero."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics.infomec import (
    _logistic_log_loss,
    active_latents,
    compute_infomec,
    label_encode,
    modularity_compactness,
    nmi_matrix,
)


def grid_factors(sizes: tuple[int, ...], reps: int, seed: int = 0) -> np.ndarray:
    """Every factor combination `reps` times, shuffled."""
    axes = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    grid = np.stack(axes, axis=-1).reshape(-1, len(sizes))
    rows = np.tile(grid, (reps, 1))
    return rows[np.random.default_rng(seed).permutation(len(rows))]


# ---- InfoM and InfoC by hand -------------------------------------------------------------------------

def test_modularity_and_compactness_by_hand():
    # NMI (2 factors x 3 latents) = [[0.5, 0, 0.2], [0.5, 0, 0]], all latents active.
    # g(v) = (max/sum - 1/n) / (1 - 1/n).
    # InfoM over latents (n = F = 2): latent 0 (0.5, 0.5): max/sum 1/2 -> 0; latent 1 all zero -> 0;
    #   latent 2 (0.2, 0): 1 -> 1.  InfoM = (0 + 0 + 1) / 3 = 1/3.
    # InfoC over factors (n = A = 3): factor 0 (0.5, 0, 0.2): max/sum = 5/7, g = (5/7 - 1/3)/(2/3) = 4/7;
    #   factor 1 (0.5, 0, 0): 1.  InfoC = (4/7 + 1) / 2 = 11/14.
    nmi = np.array([[0.5, 0.0, 0.2], [0.5, 0.0, 0.0]])
    infom, infoc = modularity_compactness(nmi, np.array([True, True, True]))
    assert infom == pytest.approx(1 / 3, abs=1e-15)
    assert infoc == pytest.approx(11 / 14, abs=1e-15)
    # Latent 1 inactive (A = 2): InfoM = (0 + 1) / 2 = 1/2; factor 0 (0.5, 0.2): max/sum = 5/7,
    # g = (5/7 - 1/2)/(1/2) = 3/7; InfoC = (3/7 + 1) / 2 = 5/7.
    infom, infoc = modularity_compactness(nmi, np.array([True, False, True]))
    assert infom == pytest.approx(1 / 2, abs=1e-15)
    assert infoc == pytest.approx(5 / 7, abs=1e-15)


def test_degenerate_active_sets():
    nmi = np.array([[0.5, 0.1], [0.2, 0.0]])
    # No active latent: nothing is encoded.
    assert modularity_compactness(nmi, np.array([False, False])) == (0.0, 0.0)
    # One active latent: every factor with information sits on it (g of one entry is 1);
    # InfoM over its column (0.5, 0.2): max/sum = 5/7, g = (5/7 - 1/2)/(1/2) = 3/7.
    infom, infoc = modularity_compactness(nmi, np.array([True, False]))
    assert infom == pytest.approx(3 / 7, abs=1e-15)
    assert infoc == 1.0


def test_null_model_with_balanced_weights_predicts_uniform():
    # Balanced class weights make every class count the same in the intercept-only fit, so the null
    # model predicts 1/K for every class and its log-loss is ln K whatever the class frequencies.
    y = np.repeat([0, 1, 2], [10, 20, 70])
    assert _logistic_log_loss(np.zeros((len(y), 4)), y) == pytest.approx(math.log(3), abs=1e-6)


def test_label_encoding_and_active_rules():
    f = np.array([[2, 10], [5, 10], [9, 30]])
    np.testing.assert_array_equal(label_encode(f), [[0, 0], [1, 0], [2, 1]])
    z = np.array([[0, 3, 1.0], [0, 4, 1.0], [0, 5, 1.0]])
    np.testing.assert_array_equal(active_latents(z, discrete=True), [False, True, False])
    # Continuous: ranges (2.0, 0.1, 0.09): active when range > 2.0 / 20 = 0.1 (strictly).
    zc = np.array([[0.0, 0.0, 0.0], [2.0, 0.1, 0.09]])
    np.testing.assert_array_equal(active_latents(zc, discrete=False), [True, False, False])


# ---- end to end --------------------------------------------------------------------------------------

def test_codes_equal_to_factor_indices():
    f = grid_factors((3, 4), 50)
    res = compute_infomec(f, f, discrete=True)
    np.testing.assert_allclose(res.nmi, np.eye(2), atol=1e-12)
    assert res.infom == pytest.approx(1.0, abs=1e-9)
    assert res.infoc == pytest.approx(1.0, abs=1e-9)
    assert res.infoe > 0.999
    assert res.n_active == 2


def test_duplicated_factors():
    # d = 2F copies: every latent is about one factor (InfoM = 1); every factor has NMI 1 with exactly two
    # of the d latents, so max/sum = 1/2 and InfoC = (1/2 - 1/d) / (1 - 1/d).
    f = grid_factors((2, 3, 4), 20)
    res = compute_infomec(np.concatenate([f, f], axis=1), f, discrete=True)
    d = 6
    assert res.infom == pytest.approx(1.0, abs=1e-9)
    assert res.infoc == pytest.approx((1 / 2 - 1 / d) / (1 - 1 / d), abs=1e-9)
    assert res.infoc == pytest.approx(0.4, abs=1e-9)


def test_independent_codes_score_near_zero():
    # NMI of independent variables is estimator noise; with many code values per latent and equal factor
    # sizes it is spread evenly over the factors, so InfoM and InfoC stay near 0.
    f = grid_factors((4, 4, 4), 32)
    z = np.random.default_rng(0).integers(0, 32, (len(f), 4))
    res = compute_infomec(z, f, discrete=True)
    assert res.infom < 0.15
    assert res.infoc < 0.15
    assert res.nmi.max() < 0.05
    assert res.infoe < 0.15


def test_invariant_to_permuting_latents_and_relabeling_values():
    f = grid_factors((3, 4), 50)
    rng = np.random.default_rng(3)
    z0 = np.where(rng.random(len(f)) < 0.3, rng.integers(0, 3, len(f)), f[:, 0])
    z1 = 2 * f[:, 1] + rng.integers(0, 2, len(f))
    z2 = rng.integers(0, 4, len(f))
    z = np.stack([z0, z1, z2], axis=1)
    base = compute_infomec(z, f, discrete=True)
    perm = [2, 0, 1]
    permuted = compute_infomec(z[:, perm], f, discrete=True)
    np.testing.assert_allclose(permuted.nmi, base.nmi[:, perm], atol=1e-12)
    # A bijection of every latent's values, not order-preserving.
    relabel = np.array([5, 0, 7, 2, 9, 1, 8, 3])
    relabeled = compute_infomec(relabel[z], f, discrete=True)
    np.testing.assert_allclose(relabeled.nmi, base.nmi, atol=1e-12)
    for other in (permuted, relabeled):
        assert other.infom == pytest.approx(base.infom, abs=1e-12)
        assert other.infoc == pytest.approx(base.infoc, abs=1e-12)
        assert other.infoe == pytest.approx(base.infoe, abs=1e-6)
    assert 0.2 < base.infom < 1.0


def test_constant_latents_are_inactive():
    f = grid_factors((3, 4), 50)
    z = np.stack([f[:, 0], np.full(len(f), 7), f[:, 1], np.full(len(f), 7)], axis=1)
    res = compute_infomec(z, f, discrete=True)
    np.testing.assert_array_equal(res.active, [True, False, True, False])
    assert res.n_active == 2
    np.testing.assert_allclose(res.nmi[:, [1, 3]], 0.0, atol=1e-12)
    # Over the 2 active latents the representation is the identity.
    assert res.infom == pytest.approx(1.0, abs=1e-9)
    assert res.infoc == pytest.approx(1.0, abs=1e-9)


def test_continuous_path():
    # Latents = factor value + small noise, plus a latent of noise alone whose range is under 1/20 of
    # the largest: inactive. The kNN estimator recovers NMI close to 1 on the diagonal.
    f = grid_factors((3, 4), 50)
    rng = np.random.default_rng(4)
    z = np.concatenate([f + rng.normal(0.0, 0.01, f.shape), rng.normal(0.0, 0.01, (len(f), 1))], axis=1)
    res = compute_infomec(z, f, discrete=False)
    np.testing.assert_array_equal(res.active, [True, True, False])
    assert np.diag(res.nmi[:, :2]).min() > 0.97
    assert res.infom > 0.9 and res.infoc > 0.9
    assert res.infoe > 0.95
    ten = compute_infomec(z, f, discrete=False, n_neighbors=10)
    assert ten.infom > 0.9 and not np.array_equal(ten.nmi, res.nmi)
    again = compute_infomec(z, f, discrete=False)
    np.testing.assert_array_equal(again.nmi, res.nmi)  # seeded: the same numbers twice


def test_bad_inputs():
    f = grid_factors((3, 4), 5)
    with pytest.raises(DataError, match="single value"):
        nmi_matrix(f, np.stack([f[:, 0], np.zeros(len(f), dtype=int)], axis=1), discrete=True)
    with pytest.raises(DataError, match="non-negative"):
        compute_infomec(f, f - 1, discrete=True)
    with pytest.raises(DataError, match="integer"):
        compute_infomec(f, f + 0.5, discrete=True)
    with pytest.raises(DataError, match="rows"):
        compute_infomec(f[:-1], f, discrete=True)
    with pytest.raises(UsageError, match="neighbours"):
        compute_infomec(f, f, discrete=False, n_neighbors=0)
