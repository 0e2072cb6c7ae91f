"""Tripod's two regularizers (Hsu, Hamid, Burns, Finn and Wu 2024, "Tripod: Three Complementary Inductive
Biases for Disentangled Representation Learning", ICML; the authors' `disentangle/models/autoencoder.py`),
on the fixed-grid latents of fqvae_cli.models.bottlenecks.fixed_grid:

    lambda_multiinformation * KLM  +  lambda_hessian * NHP  (+ lambda_hessian_unnormalized * HP, off by default)

KLM, the latent multiinformation log q(z) - sum_k log q_k(z_k) by kernel density estimation on the batch
(`Autoencoder.latent_multiinformation`): Gaussian kernels centred on the batch's codes, per latent with
bandwidth sigma_k (the batch standard deviation of the pre-quantization z_c, + 1e-6) and jointly with the
diagonal covariance sigma_k^2 * s, s = ((4 / (d + 2))^(1 / (d + 4)) B^(-1 / (d + 4)))^2 (Silverman's rule).

NHP, the normalized Hessian penalty (`Autoencoder.hessian_regularization`): per sample and decoder
activation f, second-order central finite differences (f(z + v) - 2 f(z) + f(z - v)) / epsilon^2 for
k perturbations v = epsilon * r * sigma, the variance over the k of them (population variance), averaged
over f's elements; with Rademacher r this is HP (the Hessian's off-diagonal mass), with Gaussian r the
whole Hessian's; NHP = HP / (that + 1e-10), summed over the activations and averaged over the batch.

The Hessian terms call the decoder on perturbed codes: the autoencoder passes its decoder in the statistics
(`stats["decoder"]`) in training. Without it (evaluation, where no loss is used) nothing is computed: the
KDE alone costs about a second on an evaluation batch of 1,024 codes."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fqvae_cli.models.regularizers import TABLE_A3, ComponentConfig, full_precision

STD_FLOOR = 1e-6  # added to the batch standard deviation, as the reference
NORMALIZER_FLOOR = 1e-10  # added to the denominator of the normalized penalty, as the reference


def silverman_factor(n_latents: int, batch: int) -> float:
    """The squared Silverman bandwidth factor for a d-dimensional Gaussian KDE on B points."""
    d = n_latents
    return ((4 / (d + 2)) ** (1 / (d + 4)) * batch ** (-1 / (d + 4))) ** 2


def _log_normal(x: Tensor, scale: Tensor) -> Tensor:
    """log N(x; 0, scale^2), elementwise."""
    var = scale * scale
    return -0.5 * (torch.log(2 * math.pi * var) + x * x / var)


def latent_multiinformation(z: Tensor, z_std: Tensor) -> Tensor:
    """(B,): log q(z_i) - sum_k log q_k(z_ik) per sample of the batch z (B, d); z_std (d,) the bandwidths of
    the marginal densities, sqrt(z_std^2 * silverman) those of the joint."""
    b, d = z.shape
    diff = z.unsqueeze(1) - z.unsqueeze(0)  # [I, J, k]: z_Ik - z_Jk
    log_b = math.log(b)
    log_marginals = torch.logsumexp(_log_normal(diff, z_std), dim=1) - log_b  # [I, k]
    joint_scale = torch.sqrt(z_std * z_std * silverman_factor(d, b))
    log_joint = torch.logsumexp(_log_normal(diff, joint_scale).sum(2), dim=1) - log_b  # [I]
    return log_joint - log_marginals.sum(1)


Activations = Callable[[Tensor], dict[str, Tensor]]


def hessian_penalties(f: Activations, z: Tensor, z_std: Tensor, rademacher: Tensor, gaussian: Tensor,
                      epsilon: float, f_z: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """(HP, NHP), each (B,) and summed over f's activations. rademacher, gaussian: (k, B, d) unit draws
    (the perturbations are epsilon * draw * z_std). f_z: f(z) when already computed; otherwise z goes
    through f in the same call as the 4k perturbed copies."""
    k, b = rademacher.shape[:2]
    v = torch.cat([rademacher, gaussian]) * (epsilon * z_std)  # (2k, B, d)
    rows = [z.unsqueeze(0)] if f_z is None else []
    out = f(torch.cat(rows + [z + v, z - v]).flatten(0, 1))  # [z,] +v (2k blocks of B), then -v
    hp = torch.zeros(b, device=z.device)
    nhp = torch.zeros(b, device=z.device)
    for name, y in out.items():
        y = full_precision(y).reshape(-1, b, y[0].numel())
        centre = y[0] if f_z is None else full_precision(f_z[name]).reshape(b, -1)
        rest = y[1:] if f_z is None else y
        plus, minus = rest[:2 * k], rest[2 * k:]
        second = (plus - 2 * centre + minus) / epsilon**2  # (2k, B, n)
        off_diagonal = second[:k].var(dim=0, unbiased=False).mean(1)
        whole = second[k:].var(dim=0, unbiased=False).mean(1)
        hp = hp + off_diagonal
        nhp = nhp + off_diagonal / (whole + NORMALIZER_FLOOR)
    return hp, nhp


def _hooked_children(decoder: nn.Module) -> dict[str, nn.Module]:
    """The decoder layers whose outputs Tripod's Hessian penalty regularizes in 'activations' mode: the
    dense projection when it ends in a nonlinearity, then every ReLU or Upsample of the feature stack but
    the last layer (the analog of the reference's cond, block0, block1, block2; x_logits left out)."""
    chosen: dict[str, nn.Module] = {}
    project = getattr(decoder, "project", None)
    if isinstance(project, nn.Sequential) and isinstance(project[-1], nn.ReLU):
        chosen["project"] = project
    features = getattr(decoder, "features", None)
    if isinstance(features, nn.Sequential):
        for i, layer in enumerate(list(features)[:-1]):
            if isinstance(layer, (nn.ReLU, nn.Upsample)):
                chosen[f"features.{i}"] = layer
    return chosen


@contextmanager
def _capture(modules: dict[str, nn.Module]):
    seen: dict[str, Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
               for name, m in modules.items()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def decoder_activations(decoder: nn.Module, on: str) -> Activations:
    """z -> the decoder's regularized activations by name ('output': its logits alone)."""
    if on == "output":
        return lambda z: {"output": decoder(z)}
    modules = _hooked_children(decoder) or {"": decoder}

    def activations(z: Tensor) -> dict[str, Tensor]:
        with _capture(modules) as seen:
            out = decoder(z)
        return dict(seen) if "" not in modules else {"output": out}

    return activations


class TripodTerms(ComponentConfig):
    """Tripod's KLM and normalized Hessian penalty. Defaults: the reference's Shapes3D values
    (configs/train_autoencoder.yaml: latent_multiinformation 1e-4, hessian_penalty_normalized 1e-2,
    num_perturbations 2, epsilon 0.1). Each term is off at weight 0 (the paper's ablations); the plain
    Hessian penalty of the naive combination is lambda_hessian_unnormalized."""

    kind: Literal["tripod"] = "tripod"
    lambda_multiinformation: float = Field(1e-4, ge=0, json_schema_extra=TABLE_A3,
                                           description="Tripod: weight of the KDE latent multiinformation")
    lambda_hessian: float = Field(1e-2, ge=0, json_schema_extra=TABLE_A3,
                                  description="Tripod: weight of the normalized Hessian penalty")
    lambda_hessian_unnormalized: float = Field(0.0, ge=0,
                                               description="Tripod: weight of the plain Hessian penalty")
    num_perturbations: int = Field(2, ge=2, le=64,
                                   description="Tripod: perturbations per kind (a variance over them: 2 or more)")
    epsilon: float = Field(0.1, gt=0, description="Tripod: finite-difference step, in batch standard deviations")
    hessian_on: Literal["activations", "output"] = Field(
        "activations", description="Tripod: the decoder's hidden activations or its output logits")

    def __call__(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        decoder = stats.get("decoder")
        if decoder is None:  # not training (the autoencoder hands the decoder in training only): no loss is used
            return {}
        z = full_precision(stats["z"])
        z_c = full_precision(stats.get("z_c", stats["z"]))
        z_std = z_c.std(0, unbiased=False) + STD_FLOOR
        zero = torch.zeros((), device=z.device)
        parts = {"multiinformation": self.lambda_multiinformation * latent_multiinformation(z, z_std).mean()
                 if self.lambda_multiinformation > 0 else zero, "hessian": zero}
        if self.lambda_hessian > 0 or self.lambda_hessian_unnormalized > 0:
            f = decoder_activations(decoder, self.hessian_on)
            shape = (self.num_perturbations, *z.shape)
            rademacher = torch.randint(0, 2, shape, device=z.device).to(z.dtype) * 2 - 1
            gaussian = torch.randn(shape, device=z.device, dtype=z.dtype)
            # float32 even under bfloat16 autocast: bf16 keeps 3 digits, and the finite differences
            # divide that rounding by epsilon^2 (a relative error of ~4e-3 against a signal of ~2.5e-3)
            with torch.autocast(z.device.type, enabled=False):
                hp, nhp = hessian_penalties(f, z, z_std, rademacher, gaussian, self.epsilon)
            parts["hessian"] = self.lambda_hessian * nhp.mean()
            if self.lambda_hessian_unnormalized > 0:
                parts["hessian_unnormalized"] = self.lambda_hessian_unnormalized * hp.mean()
        return parts
