"""The BetaVAE score (Higgins et al., ICLR 2017), as disentanglement_lib 1.5 computes it
(evaluation/metrics/beta_vae.py `compute_beta_vae_sklearn`, gin config: batches of 64, 10,000 training
points, 5,000 evaluation points).

One point: pick a factor k uniformly, draw two batches of `batch_size` combinations, copy factor k of
the first batch into the second, encode both; the feature vector is the mean over the batch of
|z1 - z2| (d values), the label is k. A logistic regression learns k from the features of the training
points (the reference's `LogisticRegression()`, written out as scikit-learn >= 0.22 resolves it: lbfgs,
multinomial, C = 1, 100 iterations, tol 1e-4; features not standardised); the score is its accuracy on
the evaluation points, the training accuracy is reported beside it.

Discrete codes: |z1 - z2| of codebook indices as numbers, as the reference does with the same array; the
held factor's latent still stands out by differing less often (its mean difference is smaller).

The draws follow the reference's random stream exactly (interventions.py); the batches are encoded many
at a time. One classifier: nothing to run in parallel over factors.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.base import Job, Metric
from fqvae_cli.metrics.interventions import (
    IMAGES_PER_CALL,
    Represent,
    check_sizes,
    chunks,
    observe,
    randint,
    represent_checked,
    sample_factors,
)

# disentanglement_lib/config/unsupervised_study_v1/metric_configs/beta_vae_sklearn.gin
BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_EVAL = 5_000


@dataclass(frozen=True, eq=False)
class BetaVAEResult:
    """The score (evaluation accuracy) and the training accuracy."""

    score: float
    train_accuracy: float


def difference_points(factor_sizes: list[int], represent: Represent, random_state: Any, batch_size: int,
                      n_points: int, images_per_call: int = IMAGES_PER_CALL) -> tuple[np.ndarray, np.ndarray]:
    """(features n_points x d, labels n_points): the reference's training points, its draws in its order."""
    n_factors = len(factor_sizes)
    features: list[np.ndarray] = []
    labels = np.empty(n_points, dtype=np.int64)
    done = 0
    for group in chunks(n_points, images_per_call // (2 * batch_size)):
        pairs = []
        for g in range(group):
            labels[done + g] = randint(random_state, n_factors)
            first = sample_factors(factor_sizes, batch_size, random_state)
            second = sample_factors(factor_sizes, batch_size, random_state)
            second[:, labels[done + g]] = first[:, labels[done + g]]
            # nuisance values (if any) after both batches are drawn, the first batch's first
            pairs += [observe(represent, first, random_state), observe(represent, second, random_state)]
        codes = represent_checked(represent, np.concatenate(pairs), features[0].shape[1] if features else None)
        codes = codes.reshape(group, 2, batch_size, -1)
        features.append(np.mean(np.abs(codes[:, 0] - codes[:, 1]), axis=1))
        done += group
    return np.concatenate(features, axis=0), labels


def classifier() -> Any:
    """The reference's `LogisticRegression()` with every setting written out."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, solver="lbfgs", max_iter=100, tol=1e-4, fit_intercept=True)


def compute_beta_vae(factor_sizes: Sequence[int], represent: Represent, random_state: Any, *,
                     batch_size: int = BATCH_SIZE, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                     images_per_call: int = IMAGES_PER_CALL, progress: Any = None) -> BetaVAEResult:
    """The BetaVAE score of `represent` (factor combinations n x F -> codes n x d) on a full grid of
    `factor_sizes`, drawing from `random_state` (numpy RandomState or Generator). `progress` advances
    twice: training points (and the fit), evaluation points."""
    from sklearn.exceptions import ConvergenceWarning

    sizes = check_sizes(factor_sizes, "the BetaVAE score", batch_size=batch_size, num_train=num_train,
                        num_eval=num_eval)
    if len(sizes) < 2:
        raise DataError("the BetaVAE score predicts which factor was held fixed, so it needs at least two "
                        f"factors; there is {len(sizes)}.")
    x_train, y_train = difference_points(sizes, represent, random_state, batch_size, num_train, images_per_call)
    if len(np.unique(y_train)) < 2:
        raise DataError(f"the {num_train} BetaVAE training points all held factor {y_train[0]} fixed; "
                        "the classifier needs at least two factors among them (draw more points).")
    with warnings.catch_warnings():
        # 100 iterations is the protocol, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = classifier().fit(x_train, y_train)
    train_accuracy = float(np.mean(model.predict(x_train) == y_train))
    if progress is not None:
        progress.advance()
    x_eval, y_eval = difference_points(sizes, represent, random_state, batch_size, num_eval, images_per_call)
    score = float(np.mean(model.predict(x_eval) == y_eval))
    if progress is not None:
        progress.advance()
    return BetaVAEResult(score=score, train_accuracy=train_accuracy)


def _run(job: Job) -> tuple[dict, Any]:
    sz = job.sizes
    r = compute_beta_vae(job.factor_sizes, job.represent, np.random.RandomState(job.seed),
                         batch_size=sz["beta_vae_batch"], num_train=sz["beta_vae_train"],
                         num_eval=sz["beta_vae_eval"], progress=job.progress)
    return {"beta_vae": r.score, "beta_vae_train": r.train_accuracy}, r


METRIC = Metric(
    "beta_vae", "BetaVAE score", "BetaVAE score (Higgins et al. 2017)",
    {"beta_vae": "BetaVAE score (eval accuracy)", "beta_vae_train": "BetaVAE score (train accuracy)"},
    {"beta_vae": "BetaVAE score"}, ("beta_vae_batch", "beta_vae_train", "beta_vae_eval"), _run, intervenes=True,
    units=2)
