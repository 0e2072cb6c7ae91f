"""Loss terms beyond reconstruction (docs/architecture.md), each returning already-weighted tensors, and
the settings base every component (bottleneck or regularizer) shares.

A regularizer reads the statistics its bottleneck exposes ('logits', 'mu'/'logvar', 'z', 'z_e'/'q') and
returns {part name: weighted loss}. Each regularizer is its own settings (a ComponentConfig of plain float
weights, never in the state_dict). The total correlation term needs a discriminator and the tensor it
sees, so it lives in discriminator.py."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

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
