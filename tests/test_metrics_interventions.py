"""FactorVAE and BetaVAE scores: the reference's own loops (disentanglement_lib factor_vae.py and
beta_vae.py, with its SplitDiscreteStateSpace sampling) transcribed below and run on the same toy dataset
with the same RandomState, against ours (which draws the same numbers but encodes many batches per call);
then answers known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import linear_model

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.beta_vae import compute_beta_vae, difference_points
from fqvae_cli.metrics.factor_vae import compute_factor_vae

SIZES = [3, 4, 5]


class ToyData:
    """A disentanglement_lib GroundTruthData on a full grid whose observations are the factors."""

    def __init__(self, sizes):
        self.factor_sizes = sizes
        self.num_factors = len(sizes)

    def sample_factors(self, num, random_state):
        factors = np.zeros((num, self.num_factors), dtype=np.int64)
        for pos, size in enumerate(self.factor_sizes):
            factors[:, pos] = random_state.randint(size, size=num)
        return factors

    def sample_observations_from_factors(self, factors, random_state):
        return factors

    def sample_observations(self, num, random_state):
        return self.sample_observations_from_factors(self.sample_factors(num, random_state), random_state)


def mixed(f: np.ndarray) -> np.ndarray:
    """Continuous codes that mix factors, so the votes are not all right."""
    f = np.asarray(f, dtype=np.float64)
    return np.stack([f[:, 0] + f[:, 1], f[:, 1] + 0.8 * np.sin(3.1 * f[:, 2]) + 0.5 * f[:, 2],
                     0.5 * f[:, 2] + 0.7 * f[:, 0], np.cos(f.sum(axis=1))], axis=1)


def indices(f: np.ndarray) -> np.ndarray:
    """Integer codes like codebook indices: mixtures taken modulo a codebook size."""
    return np.stack([(f[:, 0] * 5 + f[:, 1]) % 7, (f[:, 1] * 3 + f[:, 2]) % 11, f[:, 2] * 2, f[:, 0] * f[:, 2]], axis=1)


def reference_factor_vae(data, rep, rs, batch_size, num_train, num_eval, num_variance_estimate, threshold):
    observations = data.sample_observations(num_variance_estimate, rs)
    reps = np.vstack([rep(observations[i:i + 64]) for i in range(0, num_variance_estimate, 64)])
    global_variances = np.var(reps, axis=0, ddof=1)
    active_dims = np.sqrt(global_variances) >= threshold

    def votes_of(num_points):
        votes = np.zeros((data.num_factors, global_variances.shape[0]), dtype=np.int64)
        for _ in range(num_points):
            factor_index = rs.randint(data.num_factors)
            factors = data.sample_factors(batch_size, rs)
            factors[:, factor_index] = factors[0, factor_index]
            local_variances = np.var(rep(data.sample_observations_from_factors(factors, rs)), axis=0, ddof=1)
            argmin = np.argmin(local_variances[active_dims] / global_variances[active_dims])
            votes[factor_index, argmin] += 1
        return votes

    training_votes = votes_of(num_train)
    classifier = np.argmax(training_votes, axis=0)
    other_index = np.arange(training_votes.shape[1])
    train_accuracy = np.sum(training_votes[classifier, other_index]) * 1. / np.sum(training_votes)
    eval_votes = votes_of(num_eval)
    eval_accuracy = np.sum(eval_votes[classifier, other_index]) * 1. / np.sum(eval_votes)
    return train_accuracy, eval_accuracy, training_votes, eval_votes


def reference_beta_vae_points(data, rep, batch_size, num_points, rs):
    points, labels = None, np.zeros(num_points, dtype=np.int64)
    for i in range(num_points):
        index = rs.randint(data.num_factors)
        factors1 = data.sample_factors(batch_size, rs)
        factors2 = data.sample_factors(batch_size, rs)
        factors2[:, index] = factors1[:, index]
        r1 = rep(data.sample_observations_from_factors(factors1, rs))
        r2 = rep(data.sample_observations_from_factors(factors2, rs))
        feature_vector = np.mean(np.abs(r1 - r2), axis=0)
        if points is None:
            points = np.zeros((num_points, feature_vector.shape[0]))
        labels[i], points[i, :] = index, feature_vector
    return points, labels


# ---- the reference's loops, same draws ---------------------------------------------------------------

@pytest.mark.parametrize("rep", [mixed, indices], ids=["continuous", "integer codes"])
@pytest.mark.parametrize("per_call", [16, 4096], ids=["one batch per call", "many batches per call"])
def test_factor_vae_matches_the_reference_loop(rep, per_call):
    ref_train, ref_eval, ref_tv, ref_ev = reference_factor_vae(ToyData(SIZES), rep, np.random.RandomState(7),
                                                               16, 300, 150, 500, 0.05)
    r = compute_factor_vae(SIZES, rep, np.random.RandomState(7), batch_size=16, num_train=300, num_eval=150,
                           num_variance_estimate=500, images_per_call=per_call)
    a = r.n_active
    np.testing.assert_array_equal(r.train_votes, ref_tv[:, :a])
    np.testing.assert_array_equal(r.eval_votes, ref_ev[:, :a])
    assert r.train_accuracy == ref_train and r.score == ref_eval
    assert 0.2 < r.score < 1.0  # mixed codes: a score that the votes could get wrong


@pytest.mark.parametrize("rep", [mixed, indices], ids=["continuous", "integer codes"])
def test_beta_vae_matches_the_reference_loop(rep):
    data = ToyData(SIZES)
    rs = np.random.RandomState(11)
    x_train, y_train = reference_beta_vae_points(data, rep, 16, 300, rs)
    model = linear_model.LogisticRegression(random_state=rs)
    model.fit(x_train, y_train)
    train_accuracy = np.mean(model.predict(x_train) == y_train)
    x_eval, y_eval = reference_beta_vae_points(data, rep, 16, 150, rs)
    eval_accuracy = model.score(x_eval, y_eval)

    ours_x, ours_y = difference_points(SIZES, rep, np.random.RandomState(11), 16, 300, images_per_call=100)
    np.testing.assert_array_equal(ours_y, y_train)
    np.testing.assert_array_equal(ours_x, x_train)
    r = compute_beta_vae(SIZES, rep, np.random.RandomState(11), batch_size=16, num_train=300, num_eval=150)
    assert r.train_accuracy == train_accuracy and r.score == eval_accuracy
    assert 0.5 < r.score < 1.0


# ---- known answers ------------------------------------------------------------------------------------

def test_factors_themselves_score_one():
    # The held factor's latent is constant in its batch (variance 0), every other latent varies.
    identity = lambda f: np.asarray(f, dtype=np.float64)  # noqa: E731
    r = compute_factor_vae(SIZES, identity, np.random.RandomState(0), batch_size=32, num_train=200, num_eval=100,
                           num_variance_estimate=300)
    assert r.score == 1.0 and r.train_accuracy == 1.0 and r.n_active == 3
    b = compute_beta_vae(SIZES, identity, np.random.RandomState(0), batch_size=32, num_train=200, num_eval=100)
    assert b.score == 1.0 and b.train_accuracy == 1.0


def test_relabelled_integer_codes_score_the_same():
    # A latent constant in the batch has variance 0 whatever its indices are.
    perms = [np.random.default_rng(j).permutation(s) for j, s in enumerate(SIZES)]
    relabelled = lambda f: np.stack([perms[j][f[:, j]] for j in range(3)], axis=1)  # noqa: E731
    r = compute_factor_vae(SIZES, relabelled, np.random.RandomState(0), batch_size=32, num_train=200,
                           num_eval=100, num_variance_estimate=300)
    assert r.score == 1.0


def test_a_tie_between_constant_latents_goes_to_the_first():
    twice = lambda f: np.stack([f[:, 0], f[:, 0], f[:, 1], f[:, 2]], axis=1)  # noqa: E731
    r = compute_factor_vae(SIZES, twice, np.random.RandomState(0), batch_size=32, num_train=200, num_eval=100,
                           num_variance_estimate=300)
    assert r.train_votes[:, 1].sum() == 0 and r.train_votes[0, 0] > 0 and r.score == 1.0


def test_collapsed_latents_are_pruned():
    # Latent 1 varies by 0.01 * (0 or 1): standard deviation about 0.005 < 0.05, pruned. Latent 0 alone
    # gets every vote and predicts its majority factor: the training accuracy is that factor's share.
    rep = lambda f: np.stack([f[:, 1].astype(float), 0.01 * (f[:, 0] % 2)], axis=1)  # noqa: E731
    r = compute_factor_vae(SIZES, rep, np.random.RandomState(0), batch_size=16, num_train=300, num_eval=100,
                           num_variance_estimate=500)
    assert r.n_active == 1 and r.active.tolist() == [True, False]
    assert r.train_accuracy == r.train_votes.max() / 300


def test_no_active_latent_scores_zero():
    r = compute_factor_vae(SIZES, lambda f: np.zeros((len(f), 3)), np.random.RandomState(0), batch_size=8,
                           num_train=10, num_eval=10, num_variance_estimate=50)
    assert r.score == 0.0 and r.train_accuracy == 0.0 and r.n_active == 0


def test_a_numpy_generator_is_accepted_and_seeded():
    runs = [compute_factor_vae(SIZES, mixed, np.random.default_rng(3), batch_size=8, num_train=60, num_eval=30,
                               num_variance_estimate=100).score for _ in range(2)]
    assert runs[0] == runs[1] and 0.0 < runs[0] <= 1.0


def test_bad_input_is_one_sentence():
    with pytest.raises(DataError, match="returned 7 rows for 8 factor combinations"):
        compute_factor_vae(SIZES, lambda f: np.zeros((7, 2)), np.random.RandomState(0), batch_size=8,
                           num_train=1, num_eval=1, num_variance_estimate=8, images_per_call=8)
    with pytest.raises(DataError, match="NaN"):
        compute_beta_vae(SIZES, lambda f: np.full((len(f), 2), np.nan), np.random.RandomState(0), batch_size=4,
                         num_train=5, num_eval=5)
    with pytest.raises(DataError, match="at least two factors; there is 1"):
        compute_beta_vae([4], lambda f: f, np.random.RandomState(0), batch_size=4, num_train=5, num_eval=5)
    with pytest.raises(Exception, match="batch size and its variance sample need at least 2"):
        compute_factor_vae(SIZES, mixed, np.random.RandomState(0), batch_size=1)
    with pytest.raises(Exception, match="RandomState or Generator"):
        compute_beta_vae(SIZES, mixed, 0, batch_size=4, num_train=5, num_eval=5)
