"""SAP: answers worked out by hand on balanced grids, and the reference's own formula
(disentanglement_lib sap_score.compute_score_matrix and compute_avg_diff_top_two, discrete factors),
transcribed below in its (latents x samples) layout with its literal classifier line, on the same arrays."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import grid_factors
from sklearn import svm

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.sap import compute_sap, top_two_gap


def reference_sap(mus: np.ndarray, ys: np.ndarray, mus_test: np.ndarray, ys_test: np.ndarray) -> float:
    """disentanglement_lib 1.5's SAP for discrete factors, line by line (the classifier exactly as written
    there, so it takes this scikit-learn's defaults)."""
    score_matrix = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            classifier = svm.LinearSVC(C=0.01, class_weight="balanced")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                classifier.fit(mus[i, :][:, np.newaxis], ys[j, :])
            pred = classifier.predict(mus_test[i, :][:, np.newaxis])
            score_matrix[i, j] = np.mean(pred == ys_test[j, :])
    sorted_matrix = np.sort(score_matrix, axis=0)
    return float(np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :]))


def split(z: np.ndarray, f: np.ndarray, n_train: int):
    return z[:n_train], f[:n_train], z[n_train:], f[n_train:]


def balanced(sizes: tuple[int, ...], reps: int) -> np.ndarray:
    """Two balanced grids one after the other: the training rows and the test rows are each exactly balanced."""
    return np.concatenate([grid_factors(sizes, reps, seed=0), grid_factors(sizes, reps, seed=1)])


def test_a_copy_of_binary_factors_scores_one_half():
    # Factor j (two balanced values) is predicted perfectly from its copy (accuracy 1). From the other
    # latent, independent of it on the balanced grid, any prediction is right on exactly half of the
    # rows of each value: accuracy 1/2. Gap 1 - 1/2 per factor, SAP = 1/2.
    f = balanced((2, 2), 50)
    r = compute_sap(*split(f, f, 200))
    np.testing.assert_array_equal(r.score_matrix, [[1.0, 0.5], [0.5, 1.0]])
    assert r.sap == 0.5


def test_a_constant_second_latent_predicts_one_class():
    # A constant latent gives one decision value, so one class everywhere: accuracy 1/2 on balanced rows.
    f = balanced((2,), 100)
    z = np.stack([f[:, 0], np.zeros(len(f))], axis=1)
    r = compute_sap(*split(z, f, 200))
    np.testing.assert_array_equal(r.score_matrix[:, 0], [1.0, 0.5])
    assert r.sap == 0.5


def test_top_two_gap_on_a_hand_made_matrix():
    mean, per = top_two_gap([[0.9, 0.2], [0.4, 0.3], [0.1, 0.8]])
    np.testing.assert_allclose(per, [0.5, 0.5], atol=1e-15)
    assert mean == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("kind", ["continuous", "integer codes"])
def test_agrees_with_the_reference_formula(kind):
    rng = np.random.default_rng(2)
    n = 1500
    f = np.stack([rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 2, n)], axis=1)
    if kind == "continuous":
        z = np.concatenate([f + rng.normal(0, 0.5, f.shape), rng.normal(size=(n, 1))], axis=1)
    else:  # codebook-like indices: each factor value owns a few of 32 codes, in no particular order
        owner = rng.permutation(32)[:12].reshape(4, 3)
        z = np.stack([owner[f[:, 0], rng.integers(0, 3, n)], (f[:, 1] * 5 + f[:, 2]) % 32,
                      rng.integers(0, 32, n)], axis=1)
    expected = reference_sap(z[:1000].T, f[:1000].T, z[1000:].T, f[1000:].T)
    assert compute_sap(*split(z, f, 1000)).sap == pytest.approx(expected, abs=1e-12)


def test_parallel_factors_give_the_serial_numbers():
    rng = np.random.default_rng(3)
    f = np.stack([rng.integers(0, 5, 600), rng.integers(0, 3, 600)], axis=1)
    z = f + rng.normal(0, 0.8, f.shape)

    class Counter:
        n = 0

        def advance(self, k: int = 1) -> None:
            self.n += k

    counter = Counter()
    serial = compute_sap(*split(z, f, 400), jobs=1)
    parallel = compute_sap(*split(z, f, 400), jobs=2, progress=counter)
    np.testing.assert_array_equal(serial.score_matrix, parallel.score_matrix)
    assert counter.n == 2


def test_bad_input_is_one_sentence():
    f = grid_factors((2, 3), 20)
    with pytest.raises(DataError, match="at least 2 latents"):
        compute_sap(*split(f[:, :1], f, 60))
    single = f.copy()
    single[:60, 0] = 1
    with pytest.raises(DataError, match="factor 0 takes a single value in the 60 SAP training rows"):
        compute_sap(*split(f, single, 60))
    with pytest.raises(DataError, match="different numbers of columns"):
        compute_sap(f[:60], f[:60], f[60:, :1], f[60:])
