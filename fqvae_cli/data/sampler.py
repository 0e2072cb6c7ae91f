"""Seeded random batches from a prepared dataset.

The batch of a step is a pure function of (seed, step): the index stream is a sequence of epochs,
each a permutation of the subset seeded by (seed, epoch), and step k takes items [kB, (k+1)B) of
that stream. A run resumed at step k therefore sees exactly the data it would have seen, with no
sampler state in the checkpoint. Images travel as uint8 (4x less than float) and become float
x = uint8/255 - 0.5 on the target device; with on_device=True the whole uint8 subset is moved to
the device once and batches are gathered there."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fqvae_cli.errors import UsageError


def to_float(images: Any, device: Any = "cpu", channels_last: bool = False):
    """uint8 images (n, H, W, 3), numpy or torch -> float32 tensor (n, 3, H, W) in [-0.5, 0.5] on
    `device`. The uint8 data is moved first, then converted there. With channels_last the result keeps
    the NHWC layout the images already have (one conversion, no transposing copy)."""
    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if t.dtype != torch.uint8:
        raise UsageError(f"to_float expects uint8 images, got {t.dtype}.")
    if t.ndim != 4 or t.shape[-1] != 3:
        raise UsageError(f"to_float expects images of shape (n, H, W, 3), got {tuple(t.shape)}.")
    t = t.to(device, non_blocking=True)
    x = t.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class BatchSampler:
    """Batches of `batch_size` images drawn from `indices` (dataset indices, e.g. the train split)."""

    def __init__(self, ds, indices: np.ndarray, batch_size: int, seed: int, device: Any = "cpu",
                 on_device: bool = False, channels_last: bool = False):
        self.ds = ds
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size == 0:
            raise UsageError("cannot draw batches from an empty index set.")
        if batch_size < 1:
            raise UsageError(f"batch size must be positive, got {batch_size}.")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = device
        self.on_device = on_device
        self.channels_last = channels_last
        self._perms: dict[int, np.ndarray] = {}
        self._resident = None
        if on_device:
            # Kept in the order of self.indices; batches gather positions into it. Copied over in
            # slices so host memory holds one slice, not the whole subset.
            n = self.indices.size
            self._resident = torch.empty((n, *ds.images.shape[1:]), dtype=torch.uint8, device=device)
            for a in range(0, n, 32768):
                part = torch.from_numpy(ds.images_at(self.indices[a:a + 32768]))
                self._resident[a:a + part.shape[0]].copy_(part)

    def __len__(self) -> int:
        """Number of indices in one epoch."""
        return int(self.indices.size)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) >= 4:  # only the current and the next epoch are ever needed
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([self.seed, epoch])
            self._perms[epoch] = rng.permutation(self.indices.size)
        return self._perms[epoch]

    def positions_for(self, step: int) -> np.ndarray:
        """Positions into `indices` of the batch of `step`."""
        if step < 0:
            raise UsageError(f"step must be >= 0, got {step}.")
        n, b = self.indices.size, self.batch_size
        start = step * b
        out = np.empty(b, dtype=np.int64)
        filled = 0
        while filled < b:
            epoch, offset = divmod(start + filled, n)
            take = min(b - filled, n - offset)
            out[filled:filled + take] = self._perm(epoch)[offset:offset + take]
            filled += take
        return out

    def indices_for(self, step: int) -> np.ndarray:
        """Dataset indices of the batch of `step`."""
        return self.indices[self.positions_for(step)]

    def uint8_batch(self, step: int):
        """The batch of `step` as uint8 (B, H, W, 3): numpy, or a device tensor when on_device."""
        if self._resident is not None:
            # The positions travel from pinned memory without blocking the host (no per-step sync).
            pos = torch.from_numpy(self.positions_for(step))
            if self._resident.device.type == "cuda":
                pos = pos.pin_memory().to(self._resident.device, non_blocking=True)
            return self._resident.index_select(0, pos)
        return self.ds.images_at(self.indices_for(step))

    def batch(self, step: int):
        """The batch of `step` as float32 (B, 3, H, W) in [-0.5, 0.5] on the device."""
        return to_float(self.uint8_batch(step), self.device, self.channels_last)
