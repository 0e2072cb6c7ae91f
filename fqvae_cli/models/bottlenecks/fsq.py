"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each latent is bounded to L levels by a shifted tanh and rounded to the nearest integer, with a
straight-through estimator; there is no codebook and no codebook loss. The levels are fixed, so the
code of a latent is its level index 0..L-1 and z = (code - L//2) / (L//2) in [-1, 1].

Bounding: half = (L - 1)(1 - eps) / 2 and, for even L, an offset of 0.5 with a matching shift of
atanh(0.5 / half), so that rounding lands on exactly L integers (-L/2 .. L/2 - 1 for even L) and
h = 0 maps to level 0 either way (the paper's reference code)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fqvae_cli.models.bottlenecks.base import (
    Bottleneck,
    BottleneckConfig,
    BottleneckKind,
    Regularizer,
    evenly_spaced,
)
from fqvae_cli.models.regularizers import full_precision

NAME = "fsq"
EPS = 1e-3  # keeps the bound strictly inside the outermost rounding interval


class FSQConfig(BottleneckConfig):
    kind: Literal[NAME] = NAME
    levels: int = Field(8, gt=1, description="FSQ: quantization levels per latent")


class FSQ(Bottleneck):
    """codes: (B, d) level indices; z: the levels scaled to [-1, 1] (training passes the same values
    with a straight-through gradient); tc_input: z itself, one column per latent."""

    kind = BottleneckKind(NAME, discrete=True, width=lambda d, K, C: d)
    config = FSQConfig

    def __init__(self, n_latents: int, levels: int = 8, regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, 1, regularizers)
        self.levels = levels
        self.enc_dim = self.kind.encoder_width(n_latents)
        self.half_width = levels // 2
        self._half = (levels - 1) * (1 - EPS) / 2
        self._offset = 0.5 if levels % 2 == 0 else 0.0
        self._shift = math.atanh(self._offset / self._half)

    @classmethod
    def from_config(cls, n_latents, cfg, regularizers):
        return cls(n_latents, cfg.levels, regularizers)

    @property
    def codes_per_latent(self) -> int:
        return self.levels

    def bound(self, h: Tensor) -> Tensor:
        return torch.tanh(full_precision(h) + self._shift) * self._half - self._offset

    def assign(self, h, temperature, hard):
        bounded = self.bound(h)
        rounded = torch.round(bounded)
        levels = rounded if hard else bounded + (rounded - bounded).detach()  # exact levels at evaluation
        z = levels / self.half_width
        codes = rounded.long() + self.half_width
        return z, codes, z, {"z": z}

    def z_from_codes(self, codes: Tensor) -> Tensor:
        return (codes - self.half_width).float() / self.half_width

    def traversal_values(self, i: int, z_row: Tensor, steps: int = 8) -> Tensor:
        """`steps` of the L levels, evenly spaced from the lowest to the highest (all of them when
        steps == L); the same for every latent."""
        idx = evenly_spaced(self.levels, steps, z_row.device)
        return self.z_from_codes(idx).to(z_row.dtype).unsqueeze(-1)
