"""Gaussian: the encoder emits (mu, log-variance); z = mu + sigma * eps (beta-VAE, FactorVAE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field

from fqvae_cli.models.bottlenecks.base import Bottleneck, BottleneckConfig, BottleneckKind, Regularizer

NAME = "gaussian"


class GaussianConfig(BottleneckConfig):
    kind: Literal[NAME] = NAME
    eval_code: Literal["sample", "mean"] = Field(
        "sample", description="representation fed to the metrics: a reparameterized sample (authors) or the mean")


class Gaussian(Bottleneck):
    """At evaluation z (and so the codes) is a reparameterized sample (the authors' representation) or the
    mean when eval_code == 'mean' (the disentanglement_lib convention)."""

    kind = BottleneckKind(NAME, discrete=False, width=lambda d, K, C: 2 * d)
    config = GaussianConfig

    def __init__(self, n_latents: int, regularizers: Sequence[Regularizer] = (), eval_code: str = "sample"):
        super().__init__(n_latents, 1, regularizers)
        self.enc_dim = self.kind.encoder_width(n_latents)
        self.eval_code = eval_code

    @classmethod
    def from_config(cls, n_latents, cfg, regularizers):
        return cls(n_latents, regularizers, eval_code=cfg.eval_code)

    def assign(self, h, temperature, hard):
        mu, logvar = h[:, : self.n_latents], h[:, self.n_latents:]
        if hard and self.eval_code == "mean":
            z = mu
        else:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return z, z, z, {"mu": mu, "logvar": logvar, "z": z}
