"""What the FactorVAE and BetaVAE scores share: factor combinations drawn from an explicit random state as
disentanglement_lib draws them, and a representation function applied to many batches at once.

The scores never import a model. They take the factor sizes of a full grid and `represent`, a plain
function from factor combinations (n x F integer codes) to codes (n x d): in fqvae it looks the images
up in the dataset and encodes them (fqvae_cli.metrics.codes.FactorEncoder); in a test it can be any
numpy function.

Nuisance factors (SmallNORB's instance): `factor_sizes` are the latent factors only, and each batch of
combinations goes through `observe` right after it is drawn: a representation function with an `observe`
method (FactorEncoder) turns the latent rows into full-grid rows there, drawing the nuisance values from the
score's own random state, as the reference's sample_observations_from_factors does at the same point of its
stream; `represent` then takes those rows. On a dataset without nuisance factors FactorEncoder.observe
returns the rows untouched and draws nothing, and a function without `observe` gets the rows as drawn, so
the stream and the numbers are as before.

Random stream: for a numpy RandomState, every draw is the reference's, in the reference's order (the
factor to hold fixed with `randint(F)`, then each batch factor by factor with `randint(size, size=n)`),
so the same seed draws the same factor combinations as disentanglement_lib on a dataset of the same
sizes. A numpy Generator is accepted too (its `integers` in the same order).

Batching: the reference calls the representation once per batch of 64 images; here consecutive batches
are stacked and encoded together, up to `images_per_call` images per call, then split again. Every batch
gets the codes it would get alone as long as `represent` treats rows independently (eval-mode encoders
do, up to the rounding of their batched arithmetic), so the score is the same, with far fewer, larger
forward passes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics.base import as_codes

Represent = Callable[[np.ndarray], np.ndarray]

# Images per call of the representation function: large enough for efficient forward passes, small
# enough that the uint8 images of one call stay around 50 MB at 64x64.
IMAGES_PER_CALL = 4096


def randint(random_state: Any, high: int, size: int | None = None) -> Any:
    """Uniform integers in [0, high) from a numpy RandomState (the reference's `randint`) or Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state.integers(0, high, size=size)
    if isinstance(random_state, np.random.RandomState):
        return random_state.randint(high, size=size)
    raise UsageError(f"the random state must be a numpy RandomState or Generator, not {type(random_state).__name__}.")


def sample_factors(factor_sizes: Sequence[int], n: int, random_state: Any) -> np.ndarray:
    """n combinations (n x F, int64), each factor uniform and independent, drawn factor by factor as
    disentanglement_lib's SplitDiscreteStateSpace does."""
    out = np.empty((n, len(factor_sizes)), dtype=np.int64)
    for j, size in enumerate(factor_sizes):
        out[:, j] = randint(random_state, size, n)
    return out


def observe(represent: Represent, factors: np.ndarray, random_state: Any) -> np.ndarray:
    """The rows `represent` takes for the latent `factors`: represent.observe(factors, random_state) where
    the function defines it (nuisance values drawn there, from the score's random state), else `factors`."""
    draw = getattr(represent, "observe", None)
    return factors if draw is None else draw(factors, random_state)


def check_sizes(factor_sizes: Sequence[int], metric: str, **counts: int) -> list[int]:
    """Factor sizes as ints (each >= 1) and every count >= 1, or one sentence naming the bad value."""
    sizes = [int(s) for s in factor_sizes]
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"{metric} needs a positive size for every factor, got {list(factor_sizes)}.")
    for name, value in counts.items():
        if value < 1:
            raise UsageError(f"{metric}: {name} must be at least 1, got {value}.")
    return sizes


def represent_checked(represent: Represent, factors: np.ndarray, n_latents: int | None) -> np.ndarray:
    """represent(factors), required to be finite numbers with one row per combination (and, after the first
    call, the same number of latents)."""
    codes = as_codes(represent(factors), "the codes returned by the representation function")
    if codes.shape[0] != factors.shape[0]:
        raise DataError(f"the representation function returned {codes.shape[0]} rows for "
                        f"{factors.shape[0]} factor combinations.")
    if n_latents is not None and codes.shape[1] != n_latents:
        raise DataError(f"the representation function returned {codes.shape[1]} latents, then {n_latents}.")
    return codes


def encode_in_chunks(represent: Represent, factors: np.ndarray, images_per_call: int = IMAGES_PER_CALL,
                     ) -> np.ndarray:
    """The codes of many combinations (n x F), in calls of at most `images_per_call` rows."""
    step = max(1, images_per_call)
    parts: list[np.ndarray] = []
    for start in range(0, len(factors), step):
        parts.append(represent_checked(represent, factors[start:start + step], parts[0].shape[1] if parts else None))
    return np.concatenate(parts, axis=0)


def chunks(n_points: int, per_call: int) -> Iterator[int]:
    """Sizes of consecutive groups of at most `per_call` points covering n_points."""
    per_call = max(1, per_call)
    for start in range(0, n_points, per_call):
        yield min(per_call, n_points - start)
