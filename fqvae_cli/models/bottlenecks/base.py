"""What every bottleneck shares (docs/architecture.md, the paper's Section 4).

Every bottleneck answers the same questions through one output type, BottleneckOutput:
  z         the decoder input, (B, d*C)
  codes     for the metrics: (B, d) long indices (discrete) or float values (continuous)
  tc_input  what the TC discriminator sees: (B, d*K) relaxed one-hots, or (B, d) z for continuous models
  losses    its regularizers' already-weighted loss terms
Training (soft) or evaluation (hard) follows `hard`, by default `not self.training`: soft Gumbel-softmax
samples in training; at evaluation the argmax/argmin assignment, so z holds codebook values bit for bit.
Each bottleneck also inverts codes to z (`z_from_codes`) and gives the values of a latent traversal.

A bottleneck module holds three things: its settings (a ComponentConfig), its kind (a BottleneckKind:
plain data the model list, the metrics and the figures read) and its nn.Module, whose `kind` points at
the record. The zoo (fqvae_cli.models.zoo) names the bottleneck class of each model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae_cli.models.regularizers import ComponentConfig, full_precision

Regularizer = Callable[[dict[str, Tensor]], dict[str, Tensor]]

class _Size(str):
    """A size named by its letter, so an encoder-width function can be read back as its formula:
    2 * d -> "2d", d * K -> "d*K"."""

    def __mul__(self, other: object) -> _Size:
        return _Size(f"{self}*{other}")

    def __rmul__(self, other: object) -> _Size:
        return _Size(f"{other}{self}")


@dataclass(frozen=True)
class BottleneckKind:
    """What the rest of the code may know about a bottleneck without building it.

    width: the encoder's output width (Appendix A.3's o) as a function of d (latents), K (entries or levels
    per latent) and C (values per entry), e.g. `lambda d, K, C: 2 * d`."""

    name: str
    discrete: bool  # codes are integer indices (scored with the discrete InfoMEC estimator)
    width: Callable[[int, int, int], int]
    global_codebook: bool = False  # one codebook shared by all latents (codebook usage figures)

    def encoder_width(self, d: int, k: int = 1, c: int = 1) -> int:
        return self.width(d, k, c)

    @property
    def encoder_output(self) -> str:
        """The width as a formula in d, K and C ("2d", "d*C"), read from `width` itself."""
        return str(self.width(_Size("d"), _Size("K"), _Size("C")))


class BottleneckConfig(ComponentConfig):
    """Settings of one bottleneck; subclasses add their fields (all with defaults)."""


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


def ramp(lo: Tensor, hi: Tensor, steps: int) -> Tensor:
    t = torch.linspace(0.0, 1.0, steps, device=lo.device, dtype=lo.dtype)
    return lo + (hi - lo) * t


def evenly_spaced(n: int, steps: int, device: torch.device | None = None) -> Tensor:
    """`steps` indices into 0..n-1 at evenly spaced ranks, ends included."""
    return torch.linspace(0, n - 1, steps, device=device).round().long()


class Bottleneck(nn.Module):
    """Base: d latents of value_dim C each; subclasses implement `assign` and `from_config`."""

    kind: ClassVar[BottleneckKind]
    config: ClassVar[type[BottleneckConfig]]
    enc_dim: int  # encoder output width the bottleneck expects (from kind.encoder_width)
    tc_group: int = 1  # columns of tc_input per latent (K for one-hots)

    def __init__(self, n_latents: int, value_dim: int = 1, regularizers: Sequence[Regularizer] = ()):
        super().__init__()
        self.n_latents = n_latents
        self.value_dim = value_dim
        self.regularizers = tuple(regularizers)
        if any(getattr(r, "counts_iterations", False) for r in self.regularizers):
            # updates made so far, for a term that follows a schedule (AnnealedVAE's capacity); saved with
            # the weights, advanced by Autoencoder.training_step_losses
            self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, n_latents: int, cfg: BottleneckConfig, regularizers: Sequence[Regularizer]) -> Bottleneck:
        raise NotImplementedError

    @property
    def discrete(self) -> bool:
        return self.kind.discrete

    @property
    def z_dim(self) -> int:
        return self.n_latents * self.value_dim

    @property
    def codes_per_latent(self) -> int | None:
        """How many distinct codes one latent can take (codebook entries, values or levels); None for
        continuous codes. Codebook health (perplexity, dead codes) is measured against it."""
        return None

    def forward(self, h: Tensor, temperature: float = 1.0, hard: bool | None = None,
                decoder: nn.Module | None = None) -> BottleneckOutput:
        """decoder: the model's decoder, given to the regularizers that call it on perturbed codes
        (Tripod's Hessian penalty) as stats["decoder"]; the autoencoder passes it in training."""
        if hard is None:
            hard = not self.training
        z, codes, tc_input, stats = self.assign(h, temperature, hard)
        if "iteration" in self._buffers:
            stats["iteration"] = self.iteration
        if decoder is not None:
            stats["decoder"] = decoder
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
        return ramp(zi - 3.0, zi + 3.0, steps).unsqueeze(-1)


class GlobalCodebook(Bottleneck):
    """One GLOBAL codebook of K entries of C values, shared by all d latents; logits (B, d, K) per latent."""

    def __init__(self, n_latents: int, n_entries: int, value_dim: int, init: str,
                 regularizers: Sequence[Regularizer]):
        super().__init__(n_latents, value_dim, regularizers)
        self.n_entries = n_entries
        self.tc_group = n_entries
        self.enc_dim = self.kind.encoder_width(n_latents, n_entries, value_dim)
        self.codebook = nn.Parameter(init_codebook((n_entries, value_dim), n_entries, init, entry_dim=0))

    @property
    def codes_per_latent(self) -> int:
        return self.n_entries

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
            return ramp(cb.min(), cb.max(), steps).unsqueeze(-1)
        centered = cb - cb.mean(0)
        _, _, vh = torch.linalg.svd(centered, full_matrices=False)
        v = vh[0]
        v = v * torch.sign(v[v.abs().argmax()])  # the SVD's sign is arbitrary; fix it
        order = torch.argsort(centered @ v)
        return cb[order[evenly_spaced(self.n_entries, steps, cb.device)]]
