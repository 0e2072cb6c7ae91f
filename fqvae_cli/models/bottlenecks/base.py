"""Bottlenecks: what sits between encoder and decoder (REFERENCE.md section 3, the paper's Section 4).

Every bottleneck answers the same questions through one output type, BottleneckOutput:
  z         the decoder input, (B, d*C)
  codes     for the metrics: (B, d) long indices (discrete) or float values (continuous)
  tc_input  what the TC discriminator sees: (B, d*K) relaxed one-hots, or (B, d) z for continuous models
  losses    its regularizers' already-weighted loss terms
Training (soft) or evaluation (hard) follows `hard`, by default `not self.training`: soft Gumbel-softmax
samples in training; at evaluation the argmax/argmin assignment, so z holds codebook values bit for bit.
Each bottleneck also inverts codes to z (`z_from_codes`) and gives the values of a latent traversal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae_cli.models.regularizers import full_precision

Regularizer = Callable[[dict[str, Tensor]], dict[str, Tensor]]


class BottleneckOutput(NamedTuple):
    z: Tensor
    codes: Tensor
    tc_input: Tensor
    losses: dict[str, Tensor]


def gumbel_softmax(logits: Tensor, temperature: float) -> Tensor:
    """Soft relaxed one-hot sample softmax((logits + g) / tau), g ~ Gumbel(0, 1), no straight-through."""
    logits = full_precision(logits)
    e = torch.empty_like(logits).exponential_().clamp_min(torch.finfo(logits.dtype).tiny)
    return F.softmax((logits - e.log()) / temperature, dim=-1)


def init_codebook(shape: tuple[int, ...], n_entries: int, kind: str, entry_dim: int) -> Tensor:
    """normal: N(0, 1) (authors); uniform: U(-1/K, 1/K) (the authors' other option);
    linspace: linspace(-0.5, 0.5, K) along the entries (the original QLAE)."""
    if kind == "normal":
        return torch.randn(shape)
    if kind == "uniform":
        return torch.empty(shape).uniform_(-1.0 / n_entries, 1.0 / n_entries)
    if kind == "linspace":
        ramp = torch.linspace(-0.5, 0.5, n_entries)
        view = [1] * len(shape)
        view[entry_dim] = n_entries
        return ramp.view(view).expand(shape).clone()
    raise ValueError(f"unknown codebook init '{kind}'")


def _ramp(lo: Tensor, hi: Tensor, steps: int) -> Tensor:
    t = torch.linspace(0.0, 1.0, steps, device=lo.device, dtype=lo.dtype)
    return lo + (hi - lo) * t


class Bottleneck(nn.Module):
    """Base: d latents of value_dim C each; subclasses implement `assign`."""

    discrete = False
    enc_dim: int  # encoder output width the bottleneck expects
    tc_group: int = 1  # columns of tc_input per latent (K for one-hots)

    def __init__(self, n_latents: int, value_dim: int = 1, regularizers: Sequence[Regularizer] = ()):
        super().__init__()
        self.n_latents = n_latents
        self.value_dim = value_dim
        self.regularizers = tuple(regularizers)

    @property
    def z_dim(self) -> int:
        return self.n_latents * self.value_dim

    def forward(self, h: Tensor, temperature: float = 1.0, hard: bool | None = None) -> BottleneckOutput:
        if hard is None:
            hard = not self.training
        z, codes, tc_input, stats = self.assign(h, temperature, hard)
        losses: dict[str, Tensor] = {}
        for reg in self.regularizers:
            losses.update(reg(stats))
        return BottleneckOutput(z, codes, tc_input, losses)

    def assign(self, h: Tensor, temperature: float, hard: bool) -> tuple[Tensor, Tensor, Tensor, dict]:
        raise NotImplementedError

    def z_from_codes(self, codes: Tensor) -> Tensor:
        """Continuous codes are the decoder input itself."""
        return codes

    def traversal_values(self, i: int, z_row: Tensor, steps: int = 8) -> Tensor:
        """(steps, value_dim): continuous latents sweep z_i - 3 .. z_i + 3 (the paper's Figs. 3-4)."""
        zi = z_row[i].detach()
        return _ramp(zi - 3.0, zi + 3.0, steps).unsqueeze(-1)


class Identity(Bottleneck):
    """AE and BioAE: the encoder output is the latent."""

    def __init__(self, n_latents: int, regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, 1, regularizers)
        self.enc_dim = n_latents

    def assign(self, h, temperature, hard):
        return h, h, h, {"z": h}


class Gaussian(Bottleneck):
    """beta-VAE / FactorVAE: encoder emits (mu, log-variance); z = mu + sigma * eps.

    At evaluation z (and so the codes) is a reparameterized sample (the authors' representation) or the
    mean when eval_code == 'mean' (the disentanglement_lib convention)."""

    def __init__(self, n_latents: int, regularizers: Sequence[Regularizer] = (), eval_code: str = "sample"):
        super().__init__(n_latents, 1, regularizers)
        self.enc_dim = 2 * n_latents
        self.eval_code = eval_code

    def assign(self, h, temperature, hard):
        mu, logvar = h[:, : self.n_latents], h[:, self.n_latents:]
        if hard and self.eval_code == "mean":
            z = mu
        else:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return z, z, z, {"mu": mu, "logvar": logvar}


class _GlobalCodebook(Bottleneck):
    """One GLOBAL codebook of K entries of C values, shared by all d latents; logits (B, d, K) per latent."""

    discrete = True

    def __init__(self, n_latents: int, n_entries: int, value_dim: int, init: str,
                 regularizers: Sequence[Regularizer]):
        super().__init__(n_latents, value_dim, regularizers)
        self.n_entries = n_entries
        self.tc_group = n_entries
        self.codebook = nn.Parameter(init_codebook((n_entries, value_dim), n_entries, init, entry_dim=0))

    def logits(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def assign(self, h, temperature, hard):
        logits = full_precision(self.logits(h))
        if hard:
            idx = logits.argmax(-1)
            weights = F.one_hot(idx, self.n_entries).to(logits.dtype)
            z = self.codebook[idx]  # indexing, not weights @ codebook: exact codebook values
        else:
            weights = gumbel_softmax(logits, temperature)
            idx = weights.argmax(-1)
            z = torch.einsum("bdk,kc->bdc", weights, self.codebook)
        return z.flatten(1), idx, weights.flatten(1), {"logits": logits}

    def z_from_codes(self, codes: Tensor) -> Tensor:
        return self.codebook[codes].flatten(1)

    def traversal_values(self, i: int, z_row: Tensor, steps: int = 8) -> Tensor:
        """Scalar codebook: `steps` evenly spaced values from its min to its max (the paper's Figs. 2-4).

        Vector codebook: no single ordering exists, so the entries are ranked by their projection on the
        codebook's first principal direction and `steps` entries at evenly spaced ranks are returned
        (actual codebook vectors, which the decoder was trained on)."""
        cb = self.codebook.detach()
        if self.value_dim == 1:
            return _ramp(cb.min(), cb.max(), steps).unsqueeze(-1)
        centered = cb - cb.mean(0)
        _, _, vh = torch.linalg.svd(centered, full_matrices=False)
        v = vh[0]
        v = v * torch.sign(v[v.abs().argmax()])  # the SVD's sign is arbitrary; fix it
        order = torch.argsort(centered @ v)
        ranks = torch.linspace(0, self.n_entries - 1, steps, device=cb.device).round().long()
        return cb[order[ranks]]


class RelaxedCodebook(_GlobalCodebook):
    """QVAE / FactorQVAE (C = 1) and VQVAE / FactorVQVAE (C > 1): logits = -distance(z_e, codebook).

    distance 'squared' (authors' code): sum_c (z - m)^2; 'absolute' (paper Eq. 3): |z - m|, the
    Euclidean norm ||z - m|| for vectors."""

    def __init__(self, n_latents: int, n_entries: int = 64, value_dim: int = 1, distance: str = "squared",
                 init: str = "normal", regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, n_entries, value_dim, init, regularizers)
        if distance not in ("squared", "absolute"):
            raise ValueError(f"unknown distance '{distance}'")
        self.distance = distance
        self.enc_dim = n_latents * value_dim

    def logits(self, h: Tensor) -> Tensor:
        diff = h.view(h.shape[0], self.n_latents, 1, self.value_dim) - self.codebook
        if self.distance == "squared":
            dist = diff.pow(2).sum(-1)
        elif self.value_dim == 1:
            dist = diff.abs().squeeze(-1)
        else:
            dist = torch.linalg.vector_norm(diff, dim=-1)
        return -dist


class GumbelCategorical(_GlobalCodebook):
    """dVAE / FactordVAE: the encoder emits the K logits of every latent directly."""

    def __init__(self, n_latents: int, n_entries: int = 64, value_dim: int = 1, init: str = "normal",
                 regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, n_entries, value_dim, init, regularizers)
        self.enc_dim = n_latents * n_entries

    def logits(self, h: Tensor) -> Tensor:
        return h.view(h.shape[0], self.n_latents, self.n_entries)


class PerLatentCodebook(Bottleneck):
    """QLAE: latent i has its own codebook of n_v scalars; nearest value by absolute distance.

    Training passes z_e + sg(q - z_e) (straight-through); evaluation passes q itself, exact values."""

    discrete = True

    def __init__(self, n_latents: int, n_values: int = 16, init: str = "normal",
                 regularizers: Sequence[Regularizer] = ()):
        super().__init__(n_latents, 1, regularizers)
        self.n_values = n_values
        self.tc_group = n_values
        self.enc_dim = n_latents
        self.codebook = nn.Parameter(init_codebook((n_latents, n_values), n_values, init, entry_dim=1))

    def _lookup(self, codes: Tensor) -> Tensor:
        rows = torch.arange(self.n_latents, device=codes.device)
        return self.codebook[rows, codes]

    def assign(self, h, temperature, hard):
        idx = (h.unsqueeze(-1) - self.codebook).abs().argmin(-1)
        q = self._lookup(idx)
        z = q if hard else h + (q - h).detach()
        onehot = F.one_hot(idx, self.n_values).to(h.dtype).flatten(1)
        return z, idx, onehot, {"z_e": h, "q": q}

    def z_from_codes(self, codes: Tensor) -> Tensor:
        return self._lookup(codes)

    def traversal_values(self, i: int, z_row: Tensor, steps: int = 8) -> Tensor:
        """Evenly spaced values from latent i's own codebook min to max (the paper's Fig. 2)."""
        row = self.codebook[i].detach()
        return _ramp(row.min(), row.max(), steps).unsqueeze(-1)
