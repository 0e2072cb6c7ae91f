"""DIP-VAE (Kumar, Sattigeri and Balakrishnan 2018, "Variational Inference of Disentangled Latent Concepts
from Unlabeled Observations", Eqs. 6-7): KL to N(0, I) plus a penalty that pushes a covariance of the
codes towards the identity,

    lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2,   lambda_d = lambda_d_factor * lambda_od,

on Cov[mu(x)] over the batch (DIP-VAE-I) or on E[Sigma(x)] + Cov[mu(x)] (DIP-VAE-II). The covariance is
the biased one (divided by the batch size), as disentanglement_lib's `compute_covariance_z_mean`; the
penalty is its `regularize_diag_off_diag_dip` (methods/unsupervised/vae.py)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fqvae_cli.models.regularizers import ComponentConfig, full_precision, kl_gaussian


def covariance(mu: Tensor) -> Tensor:
    """E[mu mu^T] - E[mu] E[mu]^T over the batch: (B, d) -> (d, d)."""
    mean = mu.mean(0)
    return (mu.unsqueeze(2) * mu.unsqueeze(1)).mean(0) - mean.unsqueeze(1) * mean.unsqueeze(0)


def diag_off_diag_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.pow(2).sum() + lambda_d * (diag - 1.0).pow(2).sum()


def dip_penalty(mu: Tensor, logvar: Tensor, variant: str, lambda_od: float, lambda_d: float) -> Tensor:
    cov = covariance(mu)
    if variant == "ii":
        cov = cov + torch.diag(logvar.exp().mean(0))
    return diag_off_diag_penalty(cov, lambda_od, lambda_d)


class DIP(ComponentConfig):
    """KL + the DIP penalty; defaults: lambda_od 10 of unsupervised_study_v1's 1, 2, 5, 10, 20, 50
    (lambda_d_factor 10 for DIP-VAE-I, 1 for DIP-VAE-II, set on their zoo lines)."""

    kind: Literal["dip"] = "dip"
    dip_type: Literal["i", "ii"] = Field("i", description="DIP-VAE: Cov[mu] (i) or E[Sigma] + Cov[mu] (ii)")
    lambda_od: float = Field(10.0, ge=0, description="DIP-VAE: weight of the off-diagonal entries")
    lambda_d_factor: float = Field(10.0, ge=0, description="DIP-VAE: lambda_d = lambda_d_factor * lambda_od")

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        mu, logvar = full_precision(stats["mu"]), full_precision(stats["logvar"])
        penalty = dip_penalty(mu, logvar, self.dip_type, self.lambda_od, self.lambda_d_factor * self.lambda_od)
        return {"kl": kl_gaussian(mu, logvar), "dip": penalty}
