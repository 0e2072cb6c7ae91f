"""AnnealedVAE's controlled capacity (Burgess et al. 2018, "Understanding disentangling in beta-VAE",
Eq. 8): gamma * |KL - C(t)|, the capacity C rising linearly from 0 to c_max over iteration_threshold
iterations, C(t) = min(c_max, c_max * t / iteration_threshold), as disentanglement_lib's `anneal` and
`AnnealedVAE` (methods/unsupervised/vae.py), t the number of updates made before this one.

The iteration comes from the bottleneck's `iteration` buffer, which exists for a model with this term
only: the model counts its own updates (Autoencoder.training_step_losses), so the count is saved in
every checkpoint and a resumed run continues it exactly."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from fqvae_cli.models.regularizers import ComponentConfig, full_precision, kl_gaussian


def capacity(c_max: float, iteration: Tensor, iteration_threshold: int) -> Tensor:
    return torch.clamp(c_max * iteration.float() / iteration_threshold, max=c_max)


class Capacity(ComponentConfig):
    """Defaults: gamma 1000 and iteration_threshold 100,000 (fixed in unsupervised_study_v1), c_max 25 of
    its 5, 10, 25, 50, 75, 100 (Burgess et al.'s value for dSprites)."""

    kind: Literal["capacity"] = "capacity"
    counts_iterations: ClassVar[bool] = True
    gamma: float = Field(1000.0, ge=0, description="AnnealedVAE: weight of |KL - C|")
    c_max: float = Field(25.0, ge=0, description="AnnealedVAE: final capacity C in nats")
    iteration_threshold: int = Field(100_000, gt=0, description="AnnealedVAE: iterations for C to reach c_max")

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        mu, logvar = full_precision(stats["mu"]), full_precision(stats["logvar"])
        c = capacity(self.c_max, stats["iteration"], self.iteration_threshold)
        return {"kl": self.gamma * (kl_gaussian(mu, logvar) - c).abs()}
