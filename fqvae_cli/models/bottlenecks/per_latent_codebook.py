"""Per-latent codebook: latent i has its own codebook of n_v scalars, nearest value by absolute distance,
straight-through in training (QLAE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from fqvae_cli.models.bottlenecks.base import (
    Bottleneck,
    BottleneckConfig,
    BottleneckKind,
    Regularizer,
    init_codebook,
    ramp,
)
from fqvae_cli.models.regularizers import TABLE_A3

NAME = "per_latent_codebook"


class PerLatentCodebookConfig(BottleneckConfig):
    kind: Literal[NAME] = NAME
    n_values: int = Field(16, gt=1, description="QLAE: values per latent codebook", json_schema_extra=TABLE_A3)
    codebook_init: Literal["normal", "uniform", "linspace"] = "normal"


class PerLatentCodebook(Bottleneck):
    """Training passes z_e + sg(q - z_e) (straight-through); evaluation passes q itself, exact values."""

    kind = BottleneckKind(NAME, discrete=True, width=lambda d, K, C: d)
    config = PerLatentCodebookConfig

    def __init__(self, n_latents: int, n_values: int = 16, init: str = "normal",
                 regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, 1, regularizers)
        self.n_values = n_values
        self.tc_group = n_values
        self.enc_dim = self.kind.encoder_width(n_latents)
        self.codebook = nn.Parameter(init_codebook((n_latents, n_values), n_values, init, entry_dim=1))

    @classmethod
    def from_config(cls, n_latents, cfg, regularizers):
        return cls(n_latents, cfg.n_values, cfg.codebook_init, regularizers)

    @property
    def codes_per_latent(self) -> int:
        return self.n_values

    def _lookup(self, codes: Tensor) -> Tensor:
        rows = torch.arange(self.n_latents, device=codes.device)
        return self.codebook[rows, codes]

    def assign(self, h, temperature, hard):
        idx = (h.unsqueeze(-1) - self.codebook).abs().argmin(-1)
        q = self._lookup(idx)
        z = q if hard else h + (q - h).detach()
        onehot = F.one_hot(idx, self.n_values).to(h.dtype).flatten(1)
        return z, idx, onehot, {"z_e": h, "q": q}

    def z_from_codes(self, codes: Tensor) -> Tensor:
        return self._lookup(codes)

    def traversal_values(self, i: int, z_row: Tensor, steps: int = 8) -> Tensor:
        """Evenly spaced values from latent i's own codebook min to max (the paper's Fig. 2)."""
        row = self.codebook[i].detach()
        return ramp(row.min(), row.max(), steps).unsqueeze(-1)
