"""Relaxed codebook: logits = -distance(z_e, global codebook), Gumbel-softmax in training
(QVAE / FactorQVAE with C = 1, VQVAE / FactorVQVAE with C > 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fqvae_cli.models.bottlenecks.base import BottleneckConfig, BottleneckKind, GlobalCodebook, Regularizer

NAME = "relaxed_codebook"


class RelaxedCodebookConfig(BottleneckConfig):
    kind: Literal[NAME] = NAME
    codebook_size: int = Field(64, gt=1, description="K, entries in the global codebook")
    codebook_dim: int = Field(1, gt=0, description="C, 1 = scalar codebook (QVAE), >1 = vectors (VQVAE)")
    distance: Literal["squared", "absolute"] = Field(
        "squared", description="logits = -distance; squared follows the authors' code, absolute the paper's Eq. 3")
    codebook_init: Literal["normal", "uniform", "linspace"] = "normal"


class RelaxedCodebook(GlobalCodebook):
    """distance 'squared' (authors' code): sum_c (z - m)^2; 'absolute' (paper Eq. 3): |z - m|, the
    Euclidean norm ||z - m|| for vectors."""

    kind = BottleneckKind(NAME, discrete=True, width=lambda d, K, C: d * C, global_codebook=True)
    config = RelaxedCodebookConfig

    def __init__(self, n_latents: int, n_entries: int = 64, value_dim: int = 1, distance: str = "squared",
                 init: str = "normal", regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, n_entries, value_dim, init, regularizers)
        if distance not in ("squared", "absolute"):
            raise ValueError(f"unknown distance '{distance}'")
        self.distance = distance

    @classmethod
    def from_config(cls, n_latents, cfg, regularizers):
        return cls(n_latents, cfg.codebook_size, cfg.codebook_dim, cfg.distance, cfg.codebook_init, regularizers)

    def logits(self, h: Tensor) -> Tensor:
        diff = h.view(h.shape[0], self.n_latents, 1, self.value_dim) - self.codebook
        if self.distance == "squared":
            dist = diff.pow(2).sum(-1)
        elif self.value_dim == 1:
            dist = diff.abs().squeeze(-1)
        else:
            dist = torch.linalg.vector_norm(diff, dim=-1)
        return -dist
