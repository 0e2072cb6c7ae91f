"""One training iteration: the losses and the parameter updates, nothing else.

Algorithm 1 for Factor models: the VAE update on the first half-batch (reconstruction, regularizers and
gamma * TC through a frozen discriminator), then the discriminator update on the first half's latents
against a fresh encoding of the second half with each latent permuted across the batch. Plain models
make the VAE update only. The step knows nothing of the registry, checkpoints or signals (recorder.py).

Speed settings (TrainConfig) act here: bf16 autocast around the forward passes, `torch.compile` of the
two gradient computations (the temperature enters as a 0-d tensor, so a new value each step does not
recompile), and channels_last weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch  # the training package is only imported by commands that train
from torch import Tensor

from fqvae_cli.config import TrainConfig
from fqvae_cli.device import native_bf16

ADAMW_CLIP_VALUE = 1.0  # the original QLAE clips every gradient element to [-1, 1]


def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    """Biases, other vectors and codebooks are not decayed (the original QLAE recipe)."""
    return p.ndim < 2 or name.rsplit(".", 1)[-1] == "codebook"


def vae_optimizer(model: Any, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam over encoder, decoder and codebook; with `adamw`, decay on weight matrices and kernels only."""
    named = model.named_vae_parameters()
    if train.optimizer == "adamw":
        groups = [
            {"params": [p for n, p in named if not _no_decay(n, p)], "weight_decay": train.weight_decay},
            {"params": [p for n, p in named if _no_decay(n, p)], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=train.lr)
    return torch.optim.Adam([p for _, p in named], lr=train.lr, weight_decay=train.weight_decay)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


@dataclass
class Optimizers:
    vae: torch.optim.Optimizer
    disc: torch.optim.Optimizer | None
    clip_value: float | None

    @classmethod
    def for_model(cls, model: Any, train: TrainConfig, total_correlation: bool) -> Optimizers:
        disc = torch.optim.Adam(model.discriminator_parameters(), lr=train.lr) if total_correlation else None
        clip = ADAMW_CLIP_VALUE if train.optimizer == "adamw" else None
        return cls(vae_optimizer(model, train), disc, clip)

    def state_dict(self) -> dict:
        state = {"opt_vae": self.vae.state_dict()}
        if self.disc is not None:
            state["opt_d"] = self.disc.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.vae.load_state_dict(state["opt_vae"])
        if self.disc is not None:
            self.disc.load_state_dict(state["opt_d"])


class TrainStep:
    """`parts = step(x, lr, tau)`: one iteration on the images x (B or 2B of them); returns the loss parts
    ('recon', the weighted regularizers, 'tc', 'total', and 'disc' for Factor models) as tensors."""

    def __init__(self, model: Any, opts: Optimizers, train: TrainConfig, device: Any, half: int):
        self.model = model
        self.opts = opts
        self.half = half
        self.compiled = train.compile
        # train_run settles `auto` and records it; a step built on its own decides the same way.
        bf16 = native_bf16(device) if train.bf16 == "auto" else train.bf16
        autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)

        def vae_grads(x: Tensor, tau: Any) -> tuple[dict[str, Tensor], Tensor]:
            with autocast:
                total, parts, tc_input = model.training_step_losses(x, tau)
            total.backward()
            return parts, tc_input

        def disc_grads(tc_input: Tensor, x_other: Tensor, tau: Any) -> Tensor:
            with autocast:
                loss = model.discriminator_loss(tc_input, x_other, tau)
            loss.backward()
            return loss

        self._vae_grads: Callable = torch.compile(vae_grads) if train.compile else vae_grads
        self._disc_grads: Callable = torch.compile(disc_grads) if train.compile else disc_grads

    def __call__(self, x: Tensor, lr: float, tau: float) -> dict[str, Tensor]:
        # Compiled code sees the temperature as data (no recompilation); eager code keeps the float.
        t = torch.tensor(tau, dtype=torch.float32, device=x.device) if self.compiled else tau
        opts = self.opts
        _set_lr(opts.vae, lr)
        opts.vae.zero_grad(set_to_none=True)
        parts, tc_input = self._vae_grads(x[:self.half], t)
        if opts.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.model.vae_parameters(), opts.clip_value)
        opts.vae.step()
        if opts.disc is None:
            return parts
        _set_lr(opts.disc, lr)
        opts.disc.zero_grad(set_to_none=True)
        d_loss = self._disc_grads(tc_input.detach(), x[self.half:], t)
        opts.disc.step()
        return {**parts, "disc": d_loss}


# Schedules as pure functions of the step, so a resumed run needs no scheduler state.
# 
# Learning rate: cosine annealing from lr to lr_min over the first `anneal_steps`, then held at lr_min
# (the authors' PyTorch scheduler is periodic and climbs back after the span; the paper says annealed
# "over the first 50K iterations", which is what this does).
# Gumbel temperature: tau = exp(-decay * t) with no floor (paper Appendix A).

def cosine_lr(step: int, lr: float, lr_min: float, anneal_steps: int) -> float:
    if step >= anneal_steps:
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * step / anneal_steps))


def temperature(step: int, decay: float) -> float:
    return math.exp(-decay * step)
