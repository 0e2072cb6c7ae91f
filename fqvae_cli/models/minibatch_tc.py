"""beta-TCVAE's total correlation by minibatch-weighted sampling (Chen, Li, Grosse and Duvenaud 2018,
"Isolating Sources of Disentanglement in VAEs", Eq. 4 with alpha = gamma = 1: KL + (beta - 1) * TC).

TC = E_j[log q(z_j) - sum_l log q(z_jl)], each q estimated on the batch: q(z_j) ~ sum_i q(z_j | x_i),
with the Gaussian posteriors of every sample of the batch. The constants of the estimator
(log(batch size x dataset size) per density) are left out, as in disentanglement_lib's
`total_correlation` (methods/unsupervised/vae.py), whose numbers this follows: they shift the estimate by
(d - 1) log(N M) and move no gradient (docs/fidelity.md)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fqvae_cli.models.regularizers import ComponentConfig, full_precision, kl_gaussian


def gaussian_log_density(samples: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(samples; mean, exp(logvar)), elementwise (broadcasting)."""
    return -0.5 * ((samples - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi))


def total_correlation(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The minibatch-weighted estimate of TC(z) on a batch: z, mu, logvar (B, d)."""
    log_q = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # [j, i, l]
    log_q_product = torch.logsumexp(log_q, dim=1).sum(1)  # sum_l log sum_i q(z_jl | x_i)
    log_q_joint = torch.logsumexp(log_q.sum(2), dim=1)  # log sum_i prod_l q(z_jl | x_i)
    return (log_q_joint - log_q_product).mean()


class MinibatchTC(ComponentConfig):
    """KL to N(0, I) plus (beta - 1) * TC (beta-TCVAE); beta 6 of unsupervised_study_v1's 1, 2, 4, 6, 8, 10."""

    kind: Literal["minibatch_tc"] = "minibatch_tc"
    beta: float = Field(6.0, ge=0, description="beta-TCVAE: weight of the total correlation")

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        z, mu, logvar = (full_precision(stats[k]) for k in ("z", "mu", "logvar"))
        return {"kl": kl_gaussian(mu, logvar), "tc": (self.beta - 1.0) * total_correlation(z, mu, logvar)}
