"""Autoencoder = encoder trunk + bottleneck (with its regularizers) + decoder trunk [+ total correlation].

One class serves every model of the zoo; what differs is the bottleneck, its regularizers and whether a
TC discriminator is attached. The training loop uses:

    total, parts, tc_input = model.training_step_losses(x, temperature)   # Algorithm 1, first stage
    d_loss = model.discriminator_loss(tc_input, x_other, temperature)     # second stage (Factor models)

with one optimizer over `vae_parameters()` and one over `discriminator_parameters()`.
Evaluation and figures use encode_codes / encode_z / z_from_codes / decode / traversal_values /
apply_traversal, which always take the evaluation (hard) path, whatever the module's mode."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae_cli.errors import ConfigError
from fqvae_cli.models.bottlenecks.base import Bottleneck, BottleneckOutput
from fqvae_cli.models.regularizers import TotalCorrelation


class ModelOutput(NamedTuple):
    x_hat: Tensor
    bottleneck: BottleneckOutput


class Autoencoder(nn.Module):
    def __init__(self, cfg: Any, spec: Any, encoder: nn.Module, bottleneck: Bottleneck, decoder: nn.Module,
                 tc: TotalCorrelation | None = None):
        # cfg, spec: the zoo's ModelConfig and ModelSpec of this model (zoo.build_model builds this class,
        # so they are not imported here).
        super().__init__()
        self.cfg = cfg
        self.spec = spec
        self.encoder = encoder
        self.bottleneck = bottleneck
        self.decoder = decoder
        self.tc = tc

    # ------------------------------------------------------------------ training

    def forward(self, x: Tensor, temperature: float = 1.0) -> ModelOutput:
        """Soft (Gumbel) in training mode, hard assignment in eval mode. In training the regularizers
        may call the decoder (it is in their statistics)."""
        b = self.bottleneck(self.encoder(x), temperature, decoder=self.decoder if self.training else None)
        return ModelOutput(self.decoder(b.z), b)

    def training_step_losses(self, x: Tensor, temperature: float) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """(total, parts, tc_input) for one batch.

        parts: 'recon' (reconstruction_loss), every regularizer term already weighted ('kl', 'nonneg',
        'activity', 'quantize', 'commit', 'dip'; 'tc' = (beta - 1) * TC for beta-TCVAE), 'tc' =
        gamma * mean(logit_0 - logit_1) for Factor models, and 'total'. tc_input comes back detached,
        ready for `discriminator_loss`."""
        x_hat, b = self(x, temperature)
        parts: dict[str, Tensor] = {"recon": self.reconstruction_loss(x_hat, x)}
        parts.update(b.losses)
        if "iteration" in self.bottleneck._buffers:  # a term on a schedule counts this update
            self.bottleneck.iteration += 1
        if self.tc is not None:
            parts["tc"] = self.tc.vae_term(b.tc_input)
        total = sum(parts.values(), torch.zeros((), device=x.device))
        parts["total"] = total
        return total, parts, b.tc_input.detach()

    def reconstruction_loss(self, out: Tensor, x: Tensor) -> Tensor:
        """mse: the mean squared error over pixels and channels (the paper's). bernoulli: the decoder's
        output are logits of the pixel intensities x + 0.5 in [0, 1], the binary cross-entropy summed
        over pixels and averaged over the batch (disentanglement_lib's `bernoulli_loss`). bernoulli_mean:
        the same averaged over pixels and channels too (Tripod's `binary_cross_entropy`)."""
        if self.cfg.reconstruction == "mse":
            return F.mse_loss(out, x)
        bce = F.binary_cross_entropy_with_logits(out.float(), x.float() + 0.5, reduction="none")
        return bce.mean() if self.cfg.reconstruction == "bernoulli_mean" else bce.flatten(1).sum(1).mean()

    def discriminator_loss(self, tc_input: Tensor, x_other: Tensor, temperature: float) -> Tensor:
        """Algorithm 1, second stage: encode x_other again (new noise, no VAE graph), permute each latent
        across the batch, 0.5 * (CE(D(tc_input), 0) + CE(D(permuted), 1)). Only the discriminator gets
        gradients."""
        if self.tc is None:
            raise ConfigError(f"model '{self.spec.name}' has no total-correlation discriminator.")
        with torch.no_grad():
            other = self.bottleneck(self.encoder(x_other), temperature).tc_input
        return self.tc.discriminator_loss(tc_input, other)

    def named_vae_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Encoder, decoder and codebook, by name: what the VAE optimizer steps (everything but the TC
        discriminator, which is the `tc` submodule)."""
        return [(name, p) for name, p in self.named_parameters() if not name.startswith("tc.")]

    def vae_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_vae_parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [] if self.tc is None else list(self.tc.parameters())

    # ------------------------------------------------------------------ evaluation

    def encode(self, x: Tensor, temperature: float = 1.0, hard: bool | None = None) -> BottleneckOutput:
        return self.bottleneck(self.encoder(x), temperature, hard)

    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> Tensor:
        """(B, d): exact long indices for discrete bottlenecks; floats otherwise (a Gaussian sample, or
        the mean when its eval_code is 'mean')."""
        return self.encode(x, hard=True).codes

    @torch.no_grad()
    def encode_z(self, x: Tensor) -> Tensor:
        """(B, d*C): the evaluation-mode decoder input."""
        return self.encode(x, hard=True).z

    @torch.no_grad()
    def z_from_codes(self, codes: Tensor) -> Tensor:
        """Indices -> codebook values, bit for bit; continuous codes are returned as they are."""
        return self.bottleneck.z_from_codes(codes)

    def decode(self, z: Tensor) -> Tensor:
        """Images in [-0.5, 0.5] as the data (a bernoulli decoder's logits mapped through the sigmoid)."""
        out = self.decoder(z)
        return out if self.cfg.reconstruction == "mse" else torch.sigmoid(out) - 0.5

    @torch.no_grad()
    def traversal_values(self, i: int, z_row: Tensor, steps: int = 8) -> Tensor:
        """(steps, C) values for latent i (docs/evaluation.md, Figures); see each bottleneck's docstring."""
        if not 0 <= i < self.bottleneck.n_latents:
            raise ConfigError(f"latent {i} is out of range; the model has {self.bottleneck.n_latents} latents.")
        return self.bottleneck.traversal_values(i, z_row, steps)

    def apply_traversal(self, z_row: Tensor, i: int, value: Tensor) -> Tensor:
        """A copy of z_row (d*C,) with latent i set to value (C,); value (S, C) gives S rows (S, d*C)."""
        c = self.bottleneck.value_dim
        value = value.to(device=z_row.device, dtype=z_row.dtype)
        if value.dim() == 1:
            out = z_row.clone()
            out[i * c:(i + 1) * c] = value
            return out
        out = z_row.unsqueeze(0).repeat(value.shape[0], 1)
        out[:, i * c:(i + 1) * c] = value
        return out
