"""DCI: D and C on hand-made importance matrices (answers worked out below), then the full protocol with
gradient boosted trees on representations whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics.dci import EPS, completeness, compute_dci, disentanglement, factor_random_state

LN2, LN3 = math.log(2.0), math.log(3.0)


def grid_factors(sizes: tuple[int, ...], reps: int, seed: int = 0) -> np.ndarray:
    """Every factor combination `reps` times, shuffled: factors exactly balanced and independent."""
    axes = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    grid = np.stack(axes, axis=-1).reshape(-1, len(sizes))
    rows = np.tile(grid, (reps, 1))
    return rows[np.random.default_rng(seed).permutation(len(rows))]


def split(codes: np.ndarray, factors: np.ndarray, n_train: int):
    return codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:]


# ---- D and C by hand -------------------------------------------------------------------------------

def test_diagonal_importance_is_perfect_up_to_the_epsilon():
    # Each row (and column) of I_3 becomes (1+e, e, e) / (1+3e) with e = 1e-11:
    # H_3 = -(p1 ln p1 + 2 p2 ln p2) / ln 3, and every row has weight 1/3, so D = C = 1 - H_3.
    e = EPS
    p1, p2 = (1 + e) / (1 + 3 * e), e / (1 + 3 * e)
    h3 = -(p1 * math.log(p1) + 2 * p2 * math.log(p2)) / LN3
    r = np.eye(3)
    assert disentanglement(r) == pytest.approx(1 - h3, abs=1e-15)
    assert completeness(r) == pytest.approx(1 - h3, abs=1e-15)
    assert 1 - h3 > 1 - 1e-9


def test_uniform_importance_scores_zero():
    # Every row of a 2 x 4 constant matrix is uniform over the 4 factors: H_4 = 1, so D = 0.
    # Every column is uniform over the 2 latents: H_2 = 1, so C = 0.
    r = np.full((2, 4), 0.25)
    assert disentanglement(r) == pytest.approx(0.0, abs=1e-12)
    assert completeness(r) == pytest.approx(0.0, abs=1e-12)


def test_one_latent_capturing_two_factors():
    # R = [[1, 1, 0], [0, 0, 1]] (2 latents x 3 factors).
    # Latent 0: P = (1/2, 1/2, 0), H_3 = ln 2 / ln 3 = 0.6309298, so 1 - H_3 = 0.3690702; weight 2/3.
    # Latent 1: P = (0, 0, 1), H_3 = 0, so 1; weight 1/3.
    # D = 2/3 * 0.3690702 + 1/3 = 1 - (2/3) ln 2 / ln 3 = 0.5793801.
    # Every factor sits on one latent: C = 1.
    r = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert disentanglement(r) == pytest.approx(1 - (2 / 3) * LN2 / LN3, abs=1e-9)
    assert disentanglement(r) == pytest.approx(0.5793801, abs=1e-7)
    assert completeness(r) == pytest.approx(1.0, abs=1e-9)


def test_two_latents_sharing_one_factor():
    # R = [[1, 0], [1, 0], [0, 2]] (3 latents x 2 factors). Every latent is about one factor: D = 1.
    # Factor 0: P = (1/2, 1/2, 0) over d = 3 latents, 1 - H_3 = 1 - ln 2 / ln 3 = 0.3690702; weight 2/4.
    # Factor 1: P = (0, 0, 1), 1; weight 2/4.  C = 0.5 * 0.3690702 + 0.5 = 0.6845351.
    r = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    assert disentanglement(r) == pytest.approx(1.0, abs=1e-9)
    assert completeness(r) == pytest.approx(1 - 0.5 * LN2 / LN3, abs=1e-9)
    assert completeness(r) == pytest.approx(0.6845351, abs=1e-7)


def test_all_zero_importance_gets_uniform_weights_and_scores_zero():
    # Adding 1e-11 makes every row and column uniform: every entropy is 1, every 1 - H is 0, and the
    # weights (all-zero R -> uniform) average zeros: D = C = 0.
    r = np.zeros((3, 2))
    assert disentanglement(r) == pytest.approx(0.0, abs=1e-12)
    assert completeness(r) == pytest.approx(0.0, abs=1e-12)


def test_single_factor_and_scale_invariance():
    # One factor: every latent is about that factor, D = 1 (an entropy over one outcome is 0).
    # C: P = (0.3, 0.7) over 2 latents, H_2 = -(0.3 log2 0.3 + 0.7 log2 0.7) = 0.8812909, C = 0.1187091.
    r = np.array([[0.3], [0.7]])
    assert disentanglement(r) == 1.0
    assert completeness(r) == pytest.approx(0.1187091, abs=1e-7)
    r2 = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # Only the 1e-11 epsilon does not scale with R.
    assert disentanglement(5 * r2) == pytest.approx(disentanglement(r2), abs=1e-9)


def test_importance_matrix_is_checked():
    with pytest.raises(DataError):
        disentanglement(np.array([[1.0, -0.5]]))
    with pytest.raises(DataError):
        completeness(np.array([1.0, 2.0]))


# ---- the full protocol -------------------------------------------------------------------------------

def test_codes_equal_to_factor_indices_score_one():
    f = grid_factors((3, 4), 75)  # 900 rows
    res = compute_dci(*split(f, f, 600))
    assert res.d == pytest.approx(1.0, abs=1e-6)
    assert res.c == pytest.approx(1.0, abs=1e-6)
    assert res.i == 1.0 and res.i_train == 1.0
    assert res.importance.shape == (2, 2)
    assert res.importance[0, 1] < 1e-9 and res.importance[1, 0] < 1e-9
    np.testing.assert_allclose(res.importance.sum(axis=0), 1.0)  # sklearn normalizes each classifier's
    np.testing.assert_array_equal(res.per_factor_test_acc, [1.0, 1.0])


def test_duplicated_factors_keep_disentanglement():
    # Two copies of every factor: each latent is still about one factor (D = 1); the classifier splits
    # its importance between the copies, so C < 1.
    f = grid_factors((3, 4), 75)
    res = compute_dci(*split(np.concatenate([f, f], axis=1), f, 600))
    assert res.d == pytest.approx(1.0, abs=1e-6)
    assert res.i == 1.0
    assert res.c < 0.9


def test_arbitrary_relabeling_of_identity_codes_keeps_perfect_scores():
    f = grid_factors((3, 4), 75)
    codes = np.stack([np.array([7, 2, 5])[f[:, 0]], np.array([1, 9, 0, 4])[f[:, 1]]], axis=1)
    res = compute_dci(*split(codes, f, 600))
    assert res.d == pytest.approx(1.0, abs=1e-6)
    assert res.c == pytest.approx(1.0, abs=1e-6)
    assert res.i == 1.0


def noisy_codes(f: np.ndarray, seed: int = 1) -> np.ndarray:
    """Latents that follow the factors with label noise, plus one pure-noise latent."""
    rng = np.random.default_rng(seed)
    z0 = np.where(rng.random(len(f)) < 0.2, rng.integers(0, 6, len(f)), f[:, 0])
    z1 = 2 * f[:, 1] + rng.integers(0, 3, len(f))
    z2 = rng.integers(0, 5, len(f))
    return np.stack([z0, z1, z2], axis=1)


def test_invariant_to_permuting_latents_and_increasing_relabeling():
    f = grid_factors((3, 4), 75)
    z = noisy_codes(f)
    base = compute_dci(*split(z, f, 600), seed=3)
    perm = [2, 0, 1]
    permuted = compute_dci(*split(z[:, perm], f, 600), seed=3)
    # Equal up to the rounding of the tree fits, which visit the features in another order.
    np.testing.assert_allclose(permuted.importance, base.importance[perm], rtol=0, atol=1e-7)
    assert permuted.d == pytest.approx(base.d, abs=1e-7)
    assert permuted.c == pytest.approx(base.c, abs=1e-7)
    assert permuted.i == base.i
    # The trees see only the order of the values, so a strictly increasing map changes nothing.
    relabeled = compute_dci(*split(3 * z + 7, f, 600), seed=3)
    np.testing.assert_allclose(relabeled.importance, base.importance, rtol=0, atol=1e-12)
    assert relabeled.i == base.i and relabeled.i_train == base.i_train


def test_independent_codes_score_near_zero_and_chance():
    f = grid_factors((3, 4), 75)
    z = np.random.default_rng(1).integers(0, 8, (len(f), 3))
    res = compute_dci(*split(z, f, 600))
    chance = (1 / 3 + 1 / 4) / 2
    assert res.d < 0.1
    assert abs(res.i - chance) < 0.08
    assert res.i_train > res.i  # the trees overfit noise, the test accuracy does not follow


def test_constant_latents_get_no_importance():
    f = grid_factors((3, 4), 75)
    z = np.stack([f[:, 0], np.full(len(f), 5), f[:, 1]], axis=1)
    res = compute_dci(*split(z, f, 600))
    np.testing.assert_array_equal(res.importance[1], [0.0, 0.0])
    assert res.d == pytest.approx(1.0, abs=1e-6)
    assert res.c == pytest.approx(1.0, abs=1e-6)


def test_continuous_codes():
    f = grid_factors((3, 4), 75)
    z = f + np.random.default_rng(2).normal(0.0, 0.01, f.shape)
    res = compute_dci(*split(z, f, 600))
    assert res.d == pytest.approx(1.0, abs=1e-6)
    assert res.c == pytest.approx(1.0, abs=1e-6)
    assert res.i == 1.0


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def advance(self, n: int = 1) -> None:
        self.n += n

    def status(self, text: str) -> None:
        pass


def test_parallel_equals_serial_bit_for_bit(spawns):
    f = grid_factors((2, 3, 4), 25)  # 600 rows
    z = noisy_codes(f[:, 1:])
    z = np.concatenate([z, f[:, :1] ^ (np.arange(len(f)) % 7 == 0)], axis=1)
    counter = Counter()
    serial = compute_dci(*split(z, f, 400), jobs=1, seed=5)
    parallel = compute_dci(*split(z, f, 400), jobs=2, seed=5, progress=counter)
    assert counter.n == 3
    np.testing.assert_array_equal(parallel.importance, serial.importance)
    np.testing.assert_array_equal(parallel.per_factor_test_acc, serial.per_factor_test_acc)
    np.testing.assert_array_equal(parallel.per_factor_train_acc, serial.per_factor_train_acc)
    assert (parallel.d, parallel.c, parallel.i, parallel.i_train) == (serial.d, serial.c, serial.i, serial.i_train)


def test_classifier_seeds_depend_only_on_seed_and_factor():
    assert factor_random_state(0, 1) == factor_random_state(0, 1)
    assert len({factor_random_state(s, j) for s in range(3) for j in range(4)}) == 12


def test_bad_inputs():
    f = grid_factors((3, 4), 10)
    with pytest.raises(DataError, match="single value"):
        compute_dci(f[:20], np.zeros((20, 2), dtype=int), f[20:], f[20:])
    with pytest.raises(DataError, match="rows"):
        compute_dci(f[:20], f[:19], f[20:], f[20:])
    with pytest.raises(DataError, match="NaN"):
        compute_dci(np.full((20, 2), np.nan), f[:20], f[20:], f[20:])
    with pytest.raises(UsageError, match="jobs"):
        compute_dci(f[:60], f[:60], f[60:], f[60:], jobs=0)
