"""Loss terms beyond reconstruction (docs/architecture.md), each returning already-weighted tensors, and
the settings base every component (bottleneck or regularizer) shares.

A regularizer reads the statistics its bottleneck exposes ('logits', 'mu'/'logvar', 'z', 'z_e'/'q') and
returns {part name: weighted loss}. Each regularizer is its own settings (a ComponentConfig of plain float
weights, never in the state_dict). The total correlation term of Algorithm 1 builds a discriminator
module (TotalCorrelationConfig.build) and sees the bottleneck's tc_input; it is attached to the model
beside the bottleneck. The field's other terms are one module each (capacity, dip, minibatch_tc)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.func import functional_call

from fqvae_cli.models.trunks import init_paper_weights

# json_schema_extra of a component field that Table A.3 sets per dataset (a loss weight, QLAE's n_v):
# a model's Table A.3 settings are read from its components (ModelSpec.hyperparameters).
TABLE_A3 = {"table_a3": True}


class ComponentConfig(BaseModel):
    """A component's settings: a small pydantic model that rejects unknown keys and names its kind, so a
    stored model configuration says which component it holds. Subclasses declare
    `kind: Literal[NAME] = NAME` and their own fields, each with a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def kind_name(cls) -> str:
        return cls.model_fields["kind"].default

    def settings(self) -> dict:
        """The fields as `--set model.<field>` names them (without the kind)."""
        return self.model_dump(mode="json", exclude={"kind"})


def full_precision(t: Tensor) -> Tensor:
    """Half-precision activations (bf16 autocast) are upcast: a KL in bf16 keeps about 3 digits."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def kl_uniform(logits: Tensor) -> Tensor:
    """KL(softmax(logits) || Uniform(K)) = sum_k q_k log(q_k K), AVERAGED over latents and batch.

    logits: (..., K), temperature 1. log_softmax keeps q_k log q_k exact where q_k underflows."""
    log_q = F.log_softmax(full_precision(logits), dim=-1)
    k = logits.shape[-1]
    return (log_q.exp() * (log_q + math.log(k))).sum(-1).mean()


def kl_gaussian(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over latents, mean over the batch."""
    mu, logvar = full_precision(mu), full_precision(logvar)
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(-1).mean()


class KLUniform(ComponentConfig):
    """beta * KL to the uniform categorical prior (dVAE, QVAE and their Factor/vector variants)."""

    kind: Literal["kl_uniform"] = "kl_uniform"
    beta: float = Field(0.0, ge=0, json_schema_extra=TABLE_A3)

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"kl": self.beta * kl_uniform(stats["logits"])}


class KLGaussian(ComponentConfig):
    """beta * KL to N(0, I) (beta-VAE, FactorVAE)."""

    kind: Literal["kl_gaussian"] = "kl_gaussian"
    beta: float = Field(0.0, ge=0, json_schema_extra=TABLE_A3)

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"kl": self.beta * kl_gaussian(stats["mu"], stats["logvar"])}


class BioPenalties(ComponentConfig):
    """BioAE: nonnegativity mean(max(-z, 0)) and activity mean(z^2), each with its weight."""

    kind: Literal["bio"] = "bio"
    nonneg: float = Field(1.0, ge=0, json_schema_extra=TABLE_A3)
    activity: float = Field(1e-2, ge=0, json_schema_extra=TABLE_A3)

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        z = full_precision(stats["z"])
        return {"nonneg": self.nonneg * torch.relu(-z).mean(), "activity": self.activity * z.pow(2).mean()}


class QuantizeCommit(ComponentConfig):
    """QLAE: quantize mean((q - sg(z))^2) moves the codebook, commit mean((z - sg(q))^2) the encoder."""

    kind: Literal["quantize_commit"] = "quantize_commit"
    quantize: float = Field(1e-2, ge=0, json_schema_extra=TABLE_A3)
    commit: float = Field(1e-2, ge=0, json_schema_extra=TABLE_A3)

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        z, q = full_precision(stats["z_e"]), full_precision(stats["q"])
        return {
            "quantize": self.quantize * (q - z.detach()).pow(2).mean(),
            "commit": self.commit * (z - q.detach()).pow(2).mean(),
        }

# ------------------------------------------------------------------ total correlation (Algorithm 1)
# Total correlation through a density-ratio discriminator (Kim & Mnih; the paper's Section 4, Algorithm 1).
# The discriminator tells samples of q(z) (class 0) from samples of the product of marginals (class 1),
# which are made by permuting every latent independently across a batch. For discrete models a latent is
# its whole relaxed one-hot vector (K values move together); for FactorVAE it is one scalar.


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
