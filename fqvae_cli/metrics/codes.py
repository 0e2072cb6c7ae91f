"""From a trained model and a dataset to what the metrics take: sampled factor combinations, their
codes (eval mode), and the reconstruction error on held-out images. Images are encoded in large
batches; the model is put in eval mode and gradients are off."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fqvae_cli.data.nuisance import complete_factors
from fqvae_cli.data.sampler import to_float
from fqvae_cli.errors import UsageError


def sample_indices(ds: Any, n: int, seed: int, *, what: str = "this protocol") -> np.ndarray:
    """Dataset indices of `n` distinct images drawn uniformly from the whole grid (seeded), in draw order.

    Distinct, unlike disentanglement_lib's draws with replacement: a metric's train rows (the first ones)
    and test rows (the next ones) then never share an image, and the kNN mutual-information estimator
    never sees exact duplicates. On a grid much larger than `n` the two draws are nearly the same
    distribution (on 480,000 images, 10,000 draws with replacement repeat about 100 images); on a grid
    smaller than `n` the protocol cannot be honoured and is refused.

    A dataset with nuisance factors (SmallNORB: 48,600 images over 4,860 latent combinations) is drawn the
    same way, over all its images: each row's latent combination is uniform and its nuisance value uniform
    given it, as the reference draws them. The rows are distinct images, but their latent factors repeat
    (15,000 rows over 4,860 combinations must; the reference, drawing with replacement, repeats them too),
    and the refusal counts images, not combinations."""
    size = int(ds.space.size)
    if n > size:
        raise UsageError(f"{what} needs {n:,} distinct images but the dataset has only {size:,}; choose a smaller "
                         "protocol (--protocol) or a larger dataset.")
    return np.random.default_rng(seed).choice(size, size=n, replace=False).astype(np.int64)


def held_out_subset(ds: Any, n: int | None, seed: int = 0) -> np.ndarray:
    """At most `n` indices of the held-out test split, drawn at random (seeded) and returned sorted for
    memmap reads. The split itself is stored sorted, i.e. in row-major factor order, so its first n
    entries would cover only the first values of the slowest factors."""
    test = np.asarray(ds.split()["test"])
    if n is None or n >= len(test):
        return test
    return np.sort(np.random.default_rng(seed).choice(test, size=n, replace=False))


def _batches(indices: np.ndarray, batch_size: int):
    for start in range(0, len(indices), batch_size):
        yield indices[start:start + batch_size]


def encode_codes(model: Any, ds: Any, indices: np.ndarray, device: Any, *, batch_size: int = 1024,
                 seed: int = 0, progress: Any = None) -> np.ndarray:
    """Codes (n, d) of the images at `indices`: int64 indices for discrete models, float64 values otherwise.
    Gaussian models draw a reparameterized sample (seeded) unless their config asks for the mean."""
    model.eval()
    out = []
    devices = [device] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for idx in _batches(np.asarray(indices), batch_size):
            x = to_float(ds.images_at(idx), device)
            c = model.encode_codes(x)
            out.append(c.detach().cpu().numpy())
            if progress is not None:
                progress.advance(len(idx))
    codes = np.concatenate(out, axis=0) if out else np.zeros((0, 0))
    return codes.astype(np.int64) if np.issubdtype(codes.dtype, np.integer) else codes.astype(np.float64)


def reconstruction_mse(model: Any, ds: Any, indices: np.ndarray, device: Any, *, batch_size: int = 1024,
                       progress: Any = None) -> float:
    """Per-pixel MSE on the [0,1] pixel scale (the [-0.5,0.5] model scale has the same differences),
    eval mode (hard codes / posterior means as the model defines), averaged over every pixel and channel."""
    model.eval()
    total = 0.0
    count = 0
    with torch.no_grad():
        for idx in _batches(np.asarray(indices), batch_size):
            x = to_float(ds.images_at(idx), device)
            x_hat = model.decode(model.encode_z(x)).float()
            total += float(((x_hat - x) ** 2).sum(dtype=torch.float64))
            count += x.numel()
            if progress is not None:
                progress.advance(len(idx))
    return total / count if count else float("nan")


class FactorEncoder:
    """The representation function of the intervention scores: factor combinations (n x F codes of the
    dataset's full grid) -> their images' codes, as `encode_codes` gives them. Each call encodes with the
    same seed, so it is a pure function of the combinations asked (a Gaussian model's sampled noise
    included), whatever was asked before.

    On a dataset with nuisance factors (fqvae_cli.data.nuisance) the scores draw latent combinations only
    (`factor_sizes`: the latent sizes) and `observe` completes each batch with nuisance values drawn from the
    score's random state, as the reference does; without them `observe` returns the rows untouched and draws
    nothing."""

    def __init__(self, model: Any, ds: Any, device: Any, *, batch_size: int = 1024, seed: int = 0):
        self.model, self.ds, self.device = model, ds, device
        self.batch_size, self.seed = batch_size, seed

    def observe(self, factors: np.ndarray, random_state: Any) -> np.ndarray:
        """Full-grid rows for latent combinations, the nuisance values drawn from `random_state`."""
        return complete_factors(self.ds, factors, random_state)

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        indices = self.ds.space.ravel(np.asarray(factors, dtype=np.int64))
        return encode_codes(self.model, self.ds, indices, self.device, batch_size=self.batch_size, seed=self.seed)


def latent_kl(model: Any, ds: Any, indices: np.ndarray, device: Any, *,
              batch_size: int = 1024) -> np.ndarray | None:
    """Each latent's mean KL(q(z|x) || N(0, 1)) over the images at `indices`, for a bottleneck that exposes
    a Gaussian posterior ('mu', 'logvar'); None for every other bottleneck (no KL to filter latents by)."""
    model.eval()
    total, count = None, 0
    with torch.no_grad():
        for idx in _batches(np.asarray(indices), batch_size):
            stats = model.bottleneck.assign(model.encoder(to_float(ds.images_at(idx), device)), 1.0, True)[3]
            if not isinstance(stats, dict) or "mu" not in stats or "logvar" not in stats:
                return None
            mu, logvar = stats["mu"].double(), stats["logvar"].double()
            kl = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(0).cpu().numpy()
            total = kl if total is None else total + kl
            count += len(idx)
    return None if total is None else total / count
