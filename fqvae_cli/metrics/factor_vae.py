"""The FactorVAE score (Kim & Mnih, ICML 2018), as disentanglement_lib 1.5 computes it
(evaluation/metrics/factor_vae.py, gin config: batches of 64, 10,000 training votes, 5,000 evaluation
votes, 10,000 samples for the global variances, prune_dims.threshold = 0.05).

1. Global variances: the codes of `num_variance_estimate` random combinations, variance per latent
   (ddof 1). A latent is active when its standard deviation is >= threshold; no active latent scores 0.
2. A vote: pick a factor k uniformly, draw a batch of `batch_size` combinations, set factor k of every
   row to the first row's value, encode; the vote goes to (k, the active latent with the smallest
   variance in the batch divided by its global variance; the first one on a tie, as np.argmin).
3. The classifier is the majority vote: each latent predicts the factor that gave it most training votes
   (the first factor on a tie, as np.argmax). Train accuracy: share of training votes it gets right;
   the score is that share on the evaluation votes.

The reference reports `num_active_dims` as the number of latents (the length of the mask); here
`n_active` is the number of active latents.

Discrete codes: variances are taken of the codes as numbers, as the reference does with the same array.
A latent that is constant in the batch has variance 0 whatever its indices mean, so it wins the vote
(several constant latents: the first); pruning drops latents whose indices barely vary.

The draws follow the reference's random stream exactly (interventions.py); the batches are encoded many
at a time. There is nothing to run in parallel over factors: the cost is encoding images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fqvae_cli.errors import UsageError
from fqvae_cli.metrics.base import Job, Metric
from fqvae_cli.metrics.interventions import (
    IMAGES_PER_CALL,
    Represent,
    check_sizes,
    chunks,
    encode_in_chunks,
    observe,
    randint,
    represent_checked,
    sample_factors,
)

# disentanglement_lib/config/unsupervised_study_v1/metric_configs/factor_vae_metric.gin
BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_EVAL = 5_000
NUM_VARIANCE_ESTIMATE = 10_000
PRUNE_THRESHOLD = 0.05


@dataclass(frozen=True, eq=False)
class FactorVAEResult:
    """The score (evaluation accuracy), the training accuracy, the active-latent mask and the vote
    matrices (factors x active latents)."""

    score: float
    train_accuracy: float
    n_active: int
    active: np.ndarray
    global_variances: np.ndarray
    train_votes: np.ndarray
    eval_votes: np.ndarray


def _votes(factor_sizes: list[int], represent: Represent, random_state: Any, batch_size: int, n_points: int,
           global_variances: np.ndarray, active: np.ndarray, images_per_call: int) -> np.ndarray:
    n_factors = len(factor_sizes)
    votes = np.zeros((n_factors, int(active.sum())), dtype=np.int64)
    scale = global_variances[active]
    for group in chunks(n_points, images_per_call // batch_size):
        held = np.empty(group, dtype=np.int64)
        batches = []
        for g in range(group):  # the reference's draws, in its order
            held[g] = randint(random_state, n_factors)
            factors = sample_factors(factor_sizes, batch_size, random_state)
            factors[:, held[g]] = factors[0, held[g]]
            batches.append(observe(represent, factors, random_state))
        codes = represent_checked(represent, np.concatenate(batches), len(global_variances))
        local = np.var(codes.reshape(group, batch_size, -1), axis=1, ddof=1)
        argmin = np.argmin(local[:, active] / scale, axis=1)
        np.add.at(votes, (held, argmin), 1)
    return votes


def majority_accuracy(classifier: np.ndarray, votes: np.ndarray) -> float:
    """Share of the votes (factors x latents) that the classifier (a factor per latent) gets right."""
    return float(votes[classifier, np.arange(votes.shape[1])].sum() / votes.sum())


def compute_factor_vae(factor_sizes: Sequence[int], represent: Represent, random_state: Any, *,
                       batch_size: int = BATCH_SIZE, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                       num_variance_estimate: int = NUM_VARIANCE_ESTIMATE, threshold: float = PRUNE_THRESHOLD,
                       images_per_call: int = IMAGES_PER_CALL, progress: Any = None) -> FactorVAEResult:
    """The FactorVAE score of `represent` (factor combinations n x F -> codes n x d) on a full grid of
    `factor_sizes`, drawing from `random_state` (numpy RandomState or Generator). `progress` advances
    three times: variances, training votes, evaluation votes."""
    sizes = check_sizes(factor_sizes, "the FactorVAE score", batch_size=batch_size, num_train=num_train,
                        num_eval=num_eval, num_variance_estimate=num_variance_estimate)
    if batch_size < 2 or num_variance_estimate < 2:
        raise UsageError("the FactorVAE score takes variances, so its batch size and its variance sample "
                         f"need at least 2 rows each (got {batch_size} and {num_variance_estimate}).")
    variance_rows = observe(represent, sample_factors(sizes, num_variance_estimate, random_state), random_state)
    codes = encode_in_chunks(represent, variance_rows, images_per_call)
    global_variances = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= threshold
    if progress is not None:
        progress.advance()
    empty = np.zeros((len(sizes), 0), dtype=np.int64)
    if not active.any():
        if progress is not None:
            progress.advance(2)
        return FactorVAEResult(0.0, 0.0, 0, active, global_variances, empty, empty)

    train_votes = _votes(sizes, represent, random_state, batch_size, num_train, global_variances, active,
                         images_per_call)
    if progress is not None:
        progress.advance()
    classifier = np.argmax(train_votes, axis=0)
    eval_votes = _votes(sizes, represent, random_state, batch_size, num_eval, global_variances, active,
                        images_per_call)
    if progress is not None:
        progress.advance()
    return FactorVAEResult(
        score=majority_accuracy(classifier, eval_votes),
        train_accuracy=majority_accuracy(classifier, train_votes),
        n_active=int(active.sum()),
        active=active,
        global_variances=global_variances,
        train_votes=train_votes,
        eval_votes=eval_votes,
    )


def _run(job: Job) -> tuple[dict, Any]:
    sz = job.sizes
    r = compute_factor_vae(job.factor_sizes, job.represent, np.random.RandomState(job.seed),
                           batch_size=sz["factor_vae_batch"], num_train=sz["factor_vae_train"],
                           num_eval=sz["factor_vae_eval"], num_variance_estimate=sz["factor_vae_variance"],
                           progress=job.progress)
    return {"factor_vae": r.score, "factor_vae_train": r.train_accuracy, "factor_vae_active": r.n_active}, r


METRIC = Metric(
    "factor_vae", "FactorVAE score", "FactorVAE score (Kim & Mnih 2018)",
    {"factor_vae": "FactorVAE score (eval accuracy)", "factor_vae_train": "FactorVAE score (train accuracy)",
     "factor_vae_active": "FactorVAE active latents"},
    {"factor_vae": "FactorVAE score"},
    ("factor_vae_batch", "factor_vae_train", "factor_vae_eval", "factor_vae_variance"), _run, intervenes=True,
    counts=("factor_vae_active",), units=3)
