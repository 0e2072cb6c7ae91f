"""Small files in exactly the official layouts (reduced grids): 3dshapes.h5, MPI3D .npz and the
Isaac3D_down128 folder. Shared by the converter tests and the download tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from fqvae_cli.data.catalog import ISAAC3D_FACTORS
from fqvae_cli.data.factors import FactorSpace

# A reduced Shapes3D grid with the official value lists' layout: hues, scale, shape, orientation.
SHAPES_SMALL = FactorSpace(
    ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"], [2, 2, 1, 2, 2, 3],
    [[0.0, 0.1], [0.3, 0.1 * 7], [0.5], [0.75, 1.25], [0.0, 3.0], [-30.0, 0.0, 30.0]])


def images_for(n: int, size: int = 4) -> np.ndarray:
    """Image i is filled with a pattern that encodes i, so order mistakes show."""
    i = np.arange(n, dtype=np.int64)
    base = np.stack([i % 251, (i // 251) % 251, (i * 7) % 253], axis=1).astype(np.uint8)
    img = np.broadcast_to(base[:, None, None, :], (n, size, size, 3)).copy()
    img[:, 0, 0, :] = 255 - img[:, 0, 0, :]
    return img


def write_shapes3d(path, images=None, labels=None, *, compress=False, drop=None, image_dtype=None):
    space = SHAPES_SMALL
    labels = space.codes_to_values(space.all_codes()) if labels is None else labels
    images = images_for(space.size) if images is None else images
    with h5py.File(path, "w") as fh:
        opts = {"chunks": (5, *images.shape[1:]), "compression": "gzip"} if compress else {}
        if drop != "images":
            fh.create_dataset("images", data=images.astype(image_dtype or images.dtype), **opts)
        if drop != "labels":
            fh.create_dataset("labels", data=labels)
    return path


ISAAC_SIZES = (2, 1, 1, 1, 1, 2, 1, 1, 2)


def isaac_labels(sizes=ISAAC_SIZES) -> np.ndarray:
    values = [np.linspace(0, 1, s) if s > 1 else [0.5] for s in sizes]
    space = FactorSpace(ISAAC3D_FACTORS, sizes, values)
    return space.codes_to_values(space.all_codes())


def isaac_image(i: int, size: int = 128) -> np.ndarray:
    """Left half one colour, right half another, per image; bicubic keeps halves flat far from the edge."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[:, : size // 2] = (10 * i % 256, 200, 30)
    img[:, size // 2:] = (250 - i, 40, 20 * i % 256)
    return img


def write_isaac(folder, *, labels=None, missing=None, size=128):
    labels = isaac_labels() if labels is None else labels
    (folder / "images").mkdir(parents=True)
    np.save(folder / "labels.npy", labels)
    for i in range(labels.shape[0]):
        if i != missing:
            Image.fromarray(isaac_image(i, size)).save(folder / "images" / f"{i:06d}.png")
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    """A zip of `folder` with the folder itself at the top, as the official Isaac3D_down128 zip."""
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return archive
