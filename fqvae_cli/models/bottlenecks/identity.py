"""Identity: the encoder output is the latent (AE, BioAE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from fqvae_cli.models.bottlenecks.base import Bottleneck, BottleneckConfig, BottleneckKind, Regularizer

NAME = "identity"


class IdentityConfig(BottleneckConfig):
    kind: Literal[NAME] = NAME


class Identity(Bottleneck):
    """AE and BioAE: codes, z and the TC input are the encoder output itself."""

    kind = BottleneckKind(NAME, discrete=False, width=lambda d, K, C: d)
    config = IdentityConfig

    def __init__(self, n_latents: int, regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, 1, regularizers)
        self.enc_dim = self.kind.encoder_width(n_latents)

    @classmethod
    def from_config(cls, n_latents, cfg, regularizers):
        return cls(n_latents, regularizers)

    def assign(self, h, temperature, hard):
        return h, h, h, {"z": h}
