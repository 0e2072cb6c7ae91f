"""Tripod's latent quantization (Hsu et al. 2024, "Tripod: Three Complementary Inductive Biases for
Disentangled Representation Learning", Section 3.1; the authors' `disentangle/nn/quantizer.py` `Quantizer`):
a fixed scalar grid of L levels per latent, no codebook and no codebook loss.

    z_c = tanh(h)                                        in [-1, 1]
    q   = round((z_c + 1) / 2 * (L - 1))                 in {0, 1, ..., L - 1}, straight-through gradient
    z   = 2 q / (L - 1) - 1                              L evenly spaced levels from -1 to 1

The code of a latent is its level index q; the decoder sees z. z_c (before rounding) is passed on to the
regularizers: Tripod's kernel bandwidths are the batch standard deviations of z_c (fqvae_cli.models.tripod).
Rounding is half to even, as the reference's jnp.round and torch.round both do."""

from __future__ import annotations

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

NAME = "fixed_grid"


class FixedGridConfig(BottleneckConfig):
    kind: Literal[NAME] = NAME
    grid_levels: int = Field(12, gt=1, le=1024,
                             description="Tripod: levels per latent of the fixed grid (num_quantized_values)")


def round_straight_through(x: Tensor) -> Tensor:
    """round(x) forward, the identity's gradient backward."""
    return x + (torch.round(x) - x).detach()


class FixedGrid(Bottleneck):
    """codes: (B, d) level indices 0..L-1; z: the levels in [-1, 1] (straight-through in training, the
    exact levels at evaluation); tc_input: z, one column per latent."""

    kind = BottleneckKind(NAME, discrete=True, width=lambda d, K, C: d)
    config = FixedGridConfig

    def __init__(self, n_latents: int, grid_levels: int = 12, regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, 1, regularizers)
        self.grid_levels = grid_levels
        self.enc_dim = self.kind.encoder_width(n_latents)

    @classmethod
    def from_config(cls, n_latents, cfg, regularizers):
        return cls(n_latents, cfg.grid_levels, regularizers)

    @property
    def codes_per_latent(self) -> int:
        return self.grid_levels

    def assign(self, h, temperature, hard):
        z_c = torch.tanh(full_precision(h))
        scaled = (z_c + 1) / 2 * (self.grid_levels - 1)
        index = torch.round(scaled)
        q = index if hard else round_straight_through(scaled)
        z = 2 * q / (self.grid_levels - 1) - 1
        return z, index.long(), z, {"z": z, "z_c": z_c}

    def z_from_codes(self, codes: Tensor) -> Tensor:
        return 2 * codes.float() / (self.grid_levels - 1) - 1

    def traversal_values(self, i: int, z_row: Tensor, steps: int = 8) -> Tensor:
        """`steps` of the L levels, evenly spaced from -1 to 1 (all of them when steps == L)."""
        idx = evenly_spaced(self.grid_levels, steps, z_row.device)
        return self.z_from_codes(idx).to(z_row.dtype).unsqueeze(-1)
