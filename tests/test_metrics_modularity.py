"""Modularity and Explicitness: the reference's own unit-test matrices and answers worked out by hand, and
its formula (disentanglement_lib modularity_explicitness.py with utils.normalize_data), transcribed below
in its (latents x samples) layout with its literal classifier line, on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import grid_factors
from sklearn import linear_model, metrics, preprocessing
from sklearn.metrics import mutual_info_score

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.modularity import compute_modularity, modularity, modularity_per_latent


def reference_scores(mus_train, ys_train, mus_test, ys_test, num_bins=20) -> dict:
    """disentanglement_lib 1.5's modularity and explicitness, line by line."""
    discretized = np.zeros_like(mus_train)
    for i in range(mus_train.shape[0]):
        discretized[i, :] = np.digitize(mus_train[i, :], np.histogram(mus_train[i, :], num_bins)[1][:-1])
    mi = np.zeros([mus_train.shape[0], ys_train.shape[0]])
    for i in range(mus_train.shape[0]):
        for j in range(ys_train.shape[0]):
            mi[i, j] = mutual_info_score(ys_train[j, :], discretized[i, :])
    squared_mi = np.square(mi)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.)
    with np.errstate(invalid="ignore", divide="ignore"):
        modularity_score = 1. - numerator / denominator
    modularity_score[max_squared_mi == 0.] = 0.
    mean, stddev = np.mean(mus_train, axis=1), np.std(mus_train, axis=1)
    train_norm = (mus_train - mean[:, np.newaxis]) / stddev[:, np.newaxis]
    test_norm = (mus_test - mean[:, np.newaxis]) / stddev[:, np.newaxis]
    train_auc, test_auc = [], []
    for j in range(ys_train.shape[0]):
        clf = linear_model.LogisticRegression().fit(train_norm.T, ys_train[j, :])
        mlb = preprocessing.MultiLabelBinarizer()
        train_auc.append(metrics.roc_auc_score(mlb.fit_transform(np.expand_dims(ys_train[j, :], 1)),
                                               clf.predict_proba(train_norm.T)))
        test_auc.append(metrics.roc_auc_score(mlb.fit_transform(np.expand_dims(ys_test[j, :], 1)),
                                              clf.predict_proba(test_norm.T)))
    return {"modularity": float(np.mean(modularity_score)), "explicitness_train": float(np.mean(train_auc)),
            "explicitness": float(np.mean(test_auc))}


# ---- modularity of hand-made MI matrices (disentanglement_lib's own test cases) -------------------------

def test_reference_unit_cases():
    diag = np.diag(5.0 * np.ones(5))
    assert modularity(diag) == pytest.approx(1.0, abs=1e-15)
    assert modularity([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]) == pytest.approx(2 / 3, abs=1e-15)  # an empty code
    assert modularity(np.zeros((10, 10))) == 0.0
    assert modularity(np.vstack([diag, diag])) == pytest.approx(1.0, abs=1e-15)  # redundant codes
    assert modularity(diag[:2, :]) == pytest.approx(1.0, abs=1e-15)  # missed factors
    # Each code carries two factors equally, out of 10: delta = (2 - 1) 25 / (25 * 9), 1 - 1/9.
    assert modularity(np.hstack([diag, diag])) == pytest.approx(1 - 1 / 9, abs=1e-15)


def test_per_latent_by_hand():
    # (3, 1): delta = 1 / (9 * 1), 8/9. (1, 1, 1): delta = 2 / (1 * 2) = 1, 0. A single factor: 1 (the
    # reference divides 0 by 0 there); no information: 0.
    np.testing.assert_allclose(modularity_per_latent([[3.0, 1.0]]), [8 / 9], atol=1e-15)
    np.testing.assert_allclose(modularity_per_latent([[1.0, 1.0, 1.0]]), [0.0], atol=1e-15)
    np.testing.assert_array_equal(modularity_per_latent([[0.7], [0.0]]), [1.0, 0.0])


# ---- explicitness by hand ----------------------------------------------------------------------------

def test_a_copied_binary_factor_is_perfectly_explicit():
    # The probability of class 1 increases with the copy, so it ranks every positive above every negative.
    f = grid_factors((2, 3), 50)
    r = compute_modularity(f[:200], f[:200], f[200:], f[200:])
    assert r.per_factor_explicitness[0] == 1.0 and r.per_factor_explicitness_train[0] == 1.0


def test_constant_codes_rank_nothing():
    # Every row gets the same probabilities: each class's ROC-AUC is 1/2. The reference would divide by a
    # zero standard deviation here; a constant latent stays a constant feature instead.
    f = grid_factors((2, 3), 50)
    z = np.ones((len(f), 2))
    r = compute_modularity(z[:200], f[:200], z[200:], f[200:])
    assert r.explicitness == 0.5 and r.explicitness_train == 0.5
    assert r.modularity == 0.0  # no latent carries information


# ---- the reference's formula on the same arrays -------------------------------------------------------

@pytest.mark.parametrize("kind", ["continuous", "integer codes"])
def test_agrees_with_the_reference_formula(kind):
    rng = np.random.default_rng(4)
    n = 1500
    f = np.stack([rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 2, n)], axis=1)
    if kind == "continuous":
        z = np.concatenate([f + rng.normal(0, 0.6, f.shape), rng.normal(size=(n, 2))], axis=1)
    else:
        z = np.concatenate([(f * 5 + rng.integers(0, 5, f.shape)) % 32, rng.integers(0, 32, (n, 1))], axis=1)
    expected = reference_scores(z[:1000].T, f[:1000].T, z[1000:].T, f[1000:].T)
    r = compute_modularity(z[:1000], f[:1000], z[1000:], f[1000:])
    assert r.modularity == pytest.approx(expected["modularity"], abs=1e-12)
    assert r.explicitness == pytest.approx(expected["explicitness"], abs=1e-12)
    assert r.explicitness_train == pytest.approx(expected["explicitness_train"], abs=1e-12)


def test_a_class_missing_from_the_test_rows_is_left_out():
    # The reference's binarizer would give the test rows fewer columns than the classifier has.
    rng = np.random.default_rng(5)
    f = np.stack([rng.integers(0, 3, 400), rng.integers(0, 2, 400)], axis=1)
    z = f + rng.normal(0, 0.3, f.shape)
    test = f[200:].copy()
    keep = test[:, 0] != 2
    r = compute_modularity(z[:200], f[:200], z[200:][keep], test[keep])
    assert 0.5 < r.per_factor_explicitness[0] <= 1.0


def test_parallel_factors_give_the_serial_numbers():
    rng = np.random.default_rng(6)
    f = np.stack([rng.integers(0, 4, 500), rng.integers(0, 3, 500)], axis=1)
    z = f + rng.normal(0, 0.8, f.shape)
    serial = compute_modularity(z[:300], f[:300], z[300:], f[300:], jobs=1)
    parallel = compute_modularity(z[:300], f[:300], z[300:], f[300:], jobs=2)
    np.testing.assert_array_equal(serial.per_factor_explicitness, parallel.per_factor_explicitness)
    assert serial.modularity == parallel.modularity


def test_bad_input_is_one_sentence():
    f = grid_factors((2, 3), 20)
    single = f.copy()
    single[60:, 1] = 0
    with pytest.raises(DataError, match="factor 1 takes a single value in the 60 Modularity test rows"):
        compute_modularity(f[:60], f[:60], f[60:], single[60:])
    with pytest.raises(DataError, match="rows"):
        compute_modularity(f[:60], f[:59], f[60:], f[60:])
