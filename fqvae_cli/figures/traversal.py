"""Latent traversals (paper Figs. 2-4) and latent swaps (Fig. 8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fqvae_cli.figures.grid import draw_grid, to_uint8


def traversal(model: Any, x: Any, steps: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image with each latent i set to `steps` values (model.traversal_values).

    x: (1, 3, H, W) model-scale tensor. Returns (recon (3,H,W), decoded (d, steps, 3, H, W),
    values (d, steps, C)), all numpy; values are exactly what was written into z."""
    model.eval()
    with torch.no_grad():
        z = model.encode_z(x)[0]
        recon = model.decode(z[None])[0]
        d = model.cfg.latent_dim
        rows, vals = [], []
        for i in range(d):
            v = model.traversal_values(i, z, steps)
            zs = torch.stack([model.apply_traversal(z, i, v[k]) for k in range(steps)])
            rows.append(model.decode(zs))
            vals.append(v.reshape(steps, -1))
        return (recon.cpu().numpy(), torch.stack(rows).cpu().numpy(), torch.stack(vals).cpu().numpy())


def swap(model: Any, xa: Any, xb: Any) -> tuple[np.ndarray, np.ndarray]:
    """Returns (originals (2, 3, H, W) reconstructed, swapped (2, d, 3, H, W)): row 0 is image A with
    latent i taken from B, row 1 is B with latent i taken from A."""
    model.eval()
    with torch.no_grad():
        za, zb = model.encode_z(xa)[0], model.encode_z(xb)[0]
        d = model.cfg.latent_dim
        c = za.numel() // d
        a_rows, b_rows = [], []
        for i in range(d):
            sl = slice(i * c, (i + 1) * c)
            a2, b2 = za.clone(), zb.clone()
            a2[sl], b2[sl] = zb[sl], za[sl]
            a_rows.append(a2)
            b_rows.append(b2)
        out = model.decode(torch.cat([torch.stack(a_rows), torch.stack(b_rows)]))
        recon = model.decode(torch.stack([za, zb]))
        return recon.cpu().numpy(), out.reshape(2, d, *out.shape[1:]).cpu().numpy()


def snapshot_picture(model: Any, x: Any, images: np.ndarray, iteration: int, steps: int = 8) -> Any:
    """A training snapshot (training.snapshots.Draw): the batch `images` (uint8, n x H x W x 3; `x` the
    same at model scale), their reconstructions, then one traversal row per latent of image 1 through
    `steps` values, under a header naming the iteration. The caller sets evaluation mode."""
    recon = model.decode(model.encode_z(x)).float().cpu().numpy()
    _, decoded, _ = traversal(model, x[:1], steps)
    n = len(images)
    cols = max(n, steps)
    h, w = images.shape[1:3]
    tiles = np.full((2 + decoded.shape[0], cols, h, w, 3), 255, dtype=np.uint8)
    tiles[0, :n] = images
    tiles[1, :n] = to_uint8(recon)
    tiles[2:, :steps] = to_uint8(decoded)
    labels = ["test images", "reconstructed"] + [f"z{i} (image 1)" for i in range(decoded.shape[0])]
    header = [f"iteration {iteration}"] + [""] * (cols - 1)
    img, _ = draw_grid(tiles, labels, header, scale=2 if h <= 32 else 1)
    return img
