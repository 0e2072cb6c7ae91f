"""What the model being trained looks like: snapshots and codebook health, measured beside the loop.

A snapshot is one picture of the current model on a fixed batch of held-out test images, drawn by the function
the run is given (figures.traversal.snapshot_picture: the images, their reconstructions, and a traversal of
the first of them, as `fqvae traverse` draws it); training never imports the figures. Codebook health is, for
discrete models, the perplexity of each latent's codes (exp of their entropy: how many codes it uses, weighted
by use) and its dead codes (codes no image of a fixed held-out batch chose), measured as the authors log
perplexity during training.

Both are measured in evaluation mode (hard codes), without gradients and inside `torch.random.fork_rng`, and
the model is put back in training mode afterwards: they never touch the training's random stream or its
parameters, so a run with snapshots trains bit for bit as one without, and a resumed run continues exactly.
Writing the picture and the rows is the recorder's job (recorder.py); a picture that cannot be written is a
warning there, never the end of the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch  # the training package is only imported by commands that train

from fqvae_cli.data.sampler import to_float
from fqvae_cli.errors import StorageError
from fqvae_cli.files import atomic_path
from fqvae_cli.metrics.codes import held_out_subset

SNAPSHOT_IMAGES = 8  # the fixed batch shown, one column each
PNG_LEVEL = 3  # zlib level: a third of the default's time for files about 6% larger
HEALTH_IMAGES = 256  # the fixed batch whose codes give the perplexity and the dead codes (the paper's batch size)


def codebook_health(codes: np.ndarray, n_codes: int) -> dict[str, float]:
    """codes (n, d) integer codes in [0, n_codes) -> perplexity and dead codes of each latent and their
    means: {'perplexity': mean, 'perplexity/z0': ..., 'dead_codes': mean, 'dead_codes/z0': ...}.
    Perplexity of a latent: exp(-sum_k p_k log p_k) with p_k its share of code k (1 when one code takes
    every image, n_codes when all are used equally); dead codes: codes with p_k = 0."""
    codes = np.asarray(codes, dtype=np.int64)
    out: dict[str, float] = {}
    perplexities, deads = [], []
    for i in range(codes.shape[1]):
        counts = np.bincount(codes[:, i], minlength=n_codes)
        p = counts[counts > 0] / counts.sum()
        perplexities.append(float(np.exp(-(p * np.log(p)).sum())))
        deads.append(float(n_codes - np.count_nonzero(counts)))
    out["perplexity"] = float(np.mean(perplexities))
    out["dead_codes"] = float(np.mean(deads))
    for i, (pp, dead) in enumerate(zip(perplexities, deads, strict=True)):
        out[f"perplexity/z{i}"] = pp
        out[f"dead_codes/z{i}"] = dead
    return out


@contextmanager
def evaluating(model: Any, device: Any) -> Iterator[None]:
    """Evaluation mode without gradients, on a forked random stream; training mode again afterwards."""
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model.eval()
            yield
    finally:
        model.train(was_training)


# draw(model, x, images, iteration) -> a PIL image of the model on model-scale batch x (uint8 `images`).
Draw = Callable[[Any, Any, np.ndarray, int], Any]


class Snapshots:
    """The fixed batches of one run (chosen by `seed` from the held-out split, so every snapshot of a run,
    resumed or not, shows the same images) and the measurements on them. `draw` makes the picture (none
    without it)."""

    def __init__(self, model: Any, ds: Any, device: Any, *, seed: int = 0, draw: Draw | None = None):
        self.device = device
        self.draw = draw
        self.images = ds.images_at(held_out_subset(ds, SNAPSHOT_IMAGES, seed))
        self.x = to_float(self.images, device)
        self.n_codes = model.bottleneck.codes_per_latent
        self.health_x = (to_float(ds.images_at(held_out_subset(ds, HEALTH_IMAGES, seed + 1)), device)
                         if self.n_codes else None)

    def health(self, model: Any) -> dict[str, float]:
        """Codebook health of a discrete model on the fixed batch; {} for continuous codes."""
        if self.health_x is None:
            return {}
        with evaluating(model, self.device):
            codes = model.encode_codes(self.health_x).cpu().numpy()
        return codebook_health(codes, self.n_codes)

    def picture(self, model: Any, iteration: int) -> Any:
        """The model's picture at `iteration` (a PIL image), or None when the run draws none."""
        if self.draw is None:
            return None
        with evaluating(model, self.device):
            return self.draw(model, self.x, self.images, iteration)


def write_png(img: Any, path: Path) -> None:
    """A snapshot's picture written atomically; a write that fails is a StorageError naming the cause the
    system gave (no space left, permission denied, not a directory)."""
    try:
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG", compress_level=PNG_LEVEL)
    except OSError as exc:
        raise StorageError(f"could not write the snapshot {path} ({exc.strerror or exc})") from None
