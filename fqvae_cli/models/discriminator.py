"""Total correlation through a density-ratio discriminator (Kim & Mnih; the paper's Section 4, Algorithm 1).

The discriminator tells samples of q(z) (class 0) from samples of the product of marginals (class 1),
which are made by permuting every latent independently across a batch. For discrete models a latent is
its whole relaxed one-hot vector (K values move together); for FactorVAE it is one scalar."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.func import functional_call

from fqvae_cli.models.regularizers import TABLE_A3, ComponentConfig, full_precision
from fqvae_cli.models.trunks import init_paper_weights


class Discriminator(nn.Module):
    """Linear(in, w)+LeakyReLU(0.2), (layers - 2) x [Linear(w, w)+LeakyReLU(0.2)], Linear(w, 2)."""

    def __init__(self, in_dim: int, width: int = 1000, layers: int = 6):
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(in_dim, width), nn.LeakyReLU(0.2)]
        for _ in range(layers - 2):
            mods += [nn.Linear(width, width), nn.LeakyReLU(0.2)]
        mods.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*mods)
        init_paper_weights(self)  # the authors apply the trunk's N(0, 0.02) init here too

    def forward(self, t: Tensor) -> Tensor:
        return self.net(t)


def permute_latents(t: Tensor, n_latents: int) -> Tensor:
    """Permute each latent's group of columns independently across the batch.

    t: (B, d * g) where latent i owns columns [i*g, (i+1)*g). One argsort of uniform noise per latent,
    drawn from torch's global generator on t's device, so a saved RNG state replays it exactly."""
    b = t.shape[0]
    groups = t.reshape(b, n_latents, -1)
    perm = torch.argsort(torch.rand(b, n_latents, device=t.device), dim=0)
    return groups.gather(0, perm.unsqueeze(-1).expand_as(groups)).reshape(b, -1)


class TotalCorrelation(nn.Module):
    """gamma * TC estimate for the VAE loss, and the discriminator's own loss (Algorithm 1, second stage)."""

    def __init__(self, gamma: float, discriminator: Discriminator, n_latents: int):
        super().__init__()
        self.gamma = gamma
        self.discriminator = discriminator
        self.n_latents = n_latents

    def vae_term(self, tc_input: Tensor) -> Tensor:
        """gamma * mean(logit_0 - logit_1) = gamma * mean log(D(z) / (1 - D(z))).

        The discriminator runs with detached parameters: the VAE loss moves the encoder (and codebook)
        only, and leaves nothing in the discriminator's .grad for its own step to trip over."""
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        logits = full_precision(functional_call(self.discriminator, params, (tc_input,)))
        return self.gamma * (logits[:, 0] - logits[:, 1]).mean()

    def discriminator_loss(self, tc_joint: Tensor, tc_other: Tensor) -> Tensor:
        """0.5 * (CE(D(z), 0) + CE(D(z'_perm), 1)); both inputs detached from the VAE graph."""
        joint = self.discriminator(tc_joint.detach())
        perm = self.discriminator(permute_latents(tc_other.detach(), self.n_latents))
        zeros = torch.zeros(joint.shape[0], dtype=torch.long, device=joint.device)
        ones = torch.ones(perm.shape[0], dtype=torch.long, device=perm.device)
        return 0.5 * (F.cross_entropy(joint, zeros) + F.cross_entropy(perm, ones))


class TotalCorrelationConfig(ComponentConfig):
    """The TC term's weight and its discriminator's size (Algorithm 1)."""

    kind: Literal["total_correlation"] = "total_correlation"
    gamma: float = Field(0.0, ge=0, json_schema_extra=TABLE_A3)
    disc_width: int = Field(1000, gt=0)
    disc_layers: int = Field(6, ge=2)

    def build(self, n_latents: int, tc_group: int) -> TotalCorrelation:
        """For a bottleneck whose tc_input has tc_group columns per latent."""
        disc = Discriminator(n_latents * tc_group, self.disc_width, self.disc_layers)
        return TotalCorrelation(self.gamma, disc, n_latents)
