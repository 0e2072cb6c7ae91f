"""MIG and the histogram discretiser it shares with Modularity: answers worked out by hand, and the
reference's own formula (disentanglement_lib utils._histogram_discretize, discrete_mutual_info,
discrete_entropy, mig._compute_mig), transcribed below in its (latents x samples) layout, on the same
arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import grid_factors
from sklearn.metrics import mutual_info_score

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.base import histogram_discretize
from fqvae_cli.metrics.mig import compute_mig, gap_score


def reference_mig(mus_train: np.ndarray, ys_train: np.ndarray, num_bins: int = 20) -> float:
    """disentanglement_lib 1.5's MIG, line by line: arrays are (latents x samples) and (factors x samples)."""
    discretized = np.zeros_like(mus_train)
    for i in range(mus_train.shape[0]):
        discretized[i, :] = np.digitize(mus_train[i, :], np.histogram(mus_train[i, :], num_bins)[1][:-1])
    m = np.zeros([mus_train.shape[0], ys_train.shape[0]])
    for i in range(mus_train.shape[0]):
        for j in range(ys_train.shape[0]):
            m[i, j] = mutual_info_score(ys_train[j, :], discretized[i, :])
    entropy = np.array([mutual_info_score(ys_train[j, :], ys_train[j, :]) for j in range(ys_train.shape[0])])
    sorted_m = np.sort(m, axis=0)[::-1]
    return float(np.mean(np.divide(sorted_m[0, :] - sorted_m[1, :], entropy[:])))


# ---- the discretiser ------------------------------------------------------------------------------

def test_discretiser_matches_the_reference_example():
    # disentanglement_lib utils_test: two latents of six samples into 3 bins.
    target = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]]).T
    np.testing.assert_array_equal(histogram_discretize(target, 3).T, [[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]])


def test_integer_codes_keep_one_bin_per_value_up_to_twenty_consecutive_values():
    # 0..19: range 19, bins 0.95 wide with left edges 0, 0.95, ..., 18.05: value v lands in bin v + 1.
    z = np.arange(20)[:, None]
    np.testing.assert_array_equal(histogram_discretize(z)[:, 0], np.arange(20) + 1)


def test_integer_codes_with_more_values_are_merged_like_the_reference():
    # 0..20 (21 values): bins 1.0 wide, left edges 0..19, so 19 and 20 share the last bin.
    z = np.arange(21)[:, None]
    np.testing.assert_array_equal(histogram_discretize(z)[:, 0], [*range(1, 20), 20, 20])
    # 0..39: bins 1.95 wide; 2k >= 1.95k and 2k + 1 < 1.95(k + 1) for k <= 18, and 38, 39 >= 37.05:
    # neighbouring pairs share a bin, (2k, 2k + 1) -> k + 1.
    z = np.arange(40)[:, None]
    np.testing.assert_array_equal(histogram_discretize(z)[:, 0], np.arange(40) // 2 + 1)


def test_a_constant_latent_falls_in_one_bin():
    assert len(np.unique(histogram_discretize(np.full((7, 1), 3.5)))) == 1


# ---- MIG by hand ----------------------------------------------------------------------------------

def test_one_latent_per_factor_scores_one():
    # On the full balanced grid each copy holds all of its factor's entropy and none of the other's.
    f = grid_factors((3, 4), 10)
    r = compute_mig(f, f)
    assert r.mig == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(r.entropy, [math.log(3), math.log(4)], rtol=1e-12)
    np.testing.assert_allclose(r.mutual_info, np.diag([math.log(3), math.log(4)]), atol=1e-12)


def test_a_second_latent_with_half_the_information_halves_the_gap():
    # Factor 0 has 4 values: z0 copies it (ln 4 nats), z1 = s0 // 2 keeps one of its two bits (ln 2):
    # gap (ln 4 - ln 2) / ln 4 = 1/2. Factor 1 (3 values) is copied by z2 alone: gap 1. MIG = 3/4.
    f = grid_factors((4, 3), 10)
    z = np.stack([f[:, 0], f[:, 0] // 2, f[:, 1]], axis=1)
    r = compute_mig(z, f)
    np.testing.assert_allclose(r.per_factor_gap, [0.5, 1.0], atol=1e-12)
    assert r.mig == pytest.approx(0.75, abs=1e-12)


def test_a_factor_split_evenly_over_two_latents_scores_zero():
    # s0 in 0..3 as two bits, one per latent: each holds ln 2 of ln 4, the gap is 0.
    f = grid_factors((4,), 25)
    z = np.stack([f[:, 0] // 2, f[:, 0] % 2], axis=1)
    assert compute_mig(z, f).mig == pytest.approx(0.0, abs=1e-12)


def test_duplicated_latents_score_zero():
    f = grid_factors((3, 4), 10)
    assert compute_mig(np.concatenate([f, f], axis=1), f).mig == pytest.approx(0.0, abs=1e-12)


def test_independent_noise_scores_about_zero():
    rng = np.random.default_rng(0)
    f = np.stack([rng.integers(0, 5, 10_000), rng.integers(0, 4, 10_000)], axis=1)
    assert 0.0 <= compute_mig(rng.normal(size=(10_000, 4)), f).mig < 0.01


def test_gap_score_on_a_hand_made_matrix():
    # Columns (0.6, 0.2, 0.1) / 1.2 and (0.3, 0.3, 0.0) / 0.9: gaps 0.4/1.2 = 1/3 and 0.
    mean, per = gap_score([[0.6, 0.3], [0.2, 0.3], [0.1, 0.0]], [1.2, 0.9])
    np.testing.assert_allclose(per, [1 / 3, 0.0], atol=1e-15)
    assert mean == pytest.approx(1 / 6, abs=1e-15)


# ---- the reference's formula on the same arrays --------------------------------------------------------

@pytest.mark.parametrize("kind", ["continuous", "integer 0..63", "integer 0..9"])
def test_agrees_with_the_reference_formula(kind):
    rng = np.random.default_rng(1)
    f = np.stack([rng.integers(0, 6, 2000), rng.integers(0, 3, 2000), rng.integers(0, 10, 2000)], axis=1)
    if kind == "continuous":
        z = np.concatenate([f + rng.normal(0, 0.7, f.shape), rng.normal(size=(2000, 2))], axis=1)
    elif kind == "integer 0..63":
        z = np.concatenate([(f * 7 + rng.integers(0, 8, f.shape)) % 64, rng.integers(0, 64, (2000, 2))], axis=1)
    else:
        z = np.concatenate([np.minimum(f, 9), rng.integers(0, 10, (2000, 2))], axis=1)
    expected = reference_mig(z.T, f.T)
    assert compute_mig(z, f).mig == pytest.approx(expected, abs=1e-12)


def test_bad_input_is_one_sentence():
    f = grid_factors((3, 4), 10)
    with pytest.raises(DataError, match="at least 2 latents; the codes have 1"):
        compute_mig(f[:, :1], f)
    single = f.copy()
    single[:, 1] = 2
    with pytest.raises(DataError, match="factor 1 takes a single value"):
        compute_mig(f, single)
    nan = f.astype(float)
    nan[4, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        compute_mig(nan, f)
    with pytest.raises(DataError, match="rows"):
        compute_mig(f[:-1], f)
