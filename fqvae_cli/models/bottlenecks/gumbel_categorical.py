"""Gumbel categorical: the encoder emits the K logits of every latent over a global codebook
(dVAE / FactordVAE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field
from torch import Tensor

from fqvae_cli.models.bottlenecks.base import BottleneckConfig, BottleneckKind, GlobalCodebook, Regularizer

NAME = "gumbel_categorical"


class GumbelCategoricalConfig(BottleneckConfig):
    kind: Literal[NAME] = NAME
    codebook_size: int = Field(64, gt=1, description="K, entries in the global codebook")
    codebook_dim: int = Field(1, gt=0, description="C, values per codebook entry")
    codebook_init: Literal["normal", "uniform", "linspace"] = "normal"


class GumbelCategorical(GlobalCodebook):
    kind = BottleneckKind(NAME, discrete=True, width=lambda d, K, C: d * K, global_codebook=True)
    config = GumbelCategoricalConfig

    def __init__(self, n_latents: int, n_entries: int = 64, value_dim: int = 1, init: str = "normal",
                 regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, n_entries, value_dim, init, regularizers)

    @classmethod
    def from_config(cls, n_latents, cfg, regularizers):
        return cls(n_latents, cfg.codebook_size, cfg.codebook_dim, cfg.codebook_init, regularizers)

    def logits(self, h: Tensor) -> Tensor:
        return h.view(h.shape[0], self.n_latents, self.n_entries)
