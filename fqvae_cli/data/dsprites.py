"""dSprites and disentanglement_lib's three variants of it.

The official file (github.com/deepmind/dsprites-dataset) comes as `.hdf5` (`imgs` uint8 (N, 64, 64) of
0/1, `latents/classes` int64 (N, 6), `latents/values` float64 (N, 6)) or `.npz` (`imgs`,
`latents_classes`, `latents_values`). The six latent columns are colour (one value: not a factor),
shape 3, scale 6, orientation 40, position x 32, position y 32, a full grid in row-major order. The
published classes are the codes: they are checked against the values (each class one value, sorted)
and against the row-major order before anything is written. Images are stored 0/255 in three equal
channels (the store is RGB).

The variants (disentanglement_lib `data/ground_truth/dsprites.py`) draw something at random for each
image. disentanglement_lib draws at read time, so the same index gives another picture on every read;
here the draw is made once, at prepare, as a function of the image index and a recorded seed
(`np.random.default_rng([seed, index])`), so a prepared variant is the same on every machine:
- `color_dsprites`: the sprite in a colour drawn uniform in [0.5, 1] per channel, on black;
- `noisy_dsprites`: the sprite white, the background uniform noise in [0, 1] per pixel and channel;
- `scream_dsprites`: a random 64x64 patch of The Scream (thumbnailed to fit 350x274), averaged with
  a colour drawn uniform in [0, 1], the sprite's pixels inverted (1 - x). Needs `scream.jpg` beside the
  dSprites file (or in the folder given as the source).
Values in [0, 1] become uint8 by rounding x * 255."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli.console import Progress
from fqvae_cli.data.catalog import DSPRITES_FACTORS
from fqvae_cli.data.factors import FactorSpace, SourcePlan
from fqvae_cli.errors import DataError

OFFICIAL_SIZES = (3, 6, 40, 32, 32)
VARIANT_SEED = 0  # the seed of the variants' draws, recorded in meta.json
ROWS = 16384  # images read per block
SCREAM_FILE = "scream.jpg"
SCREAM_BOX = (350, 274)


def _read(source: Path) -> tuple[Any, np.ndarray, np.ndarray, Callable[[], None]]:
    """(images array-like, classes, values, closer) of a dSprites file."""
    if source.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        try:
            fh = h5py.File(source, "r")
        except OSError:
            raise DataError(f"{source} is not a readable HDF5 file (expected the dSprites .hdf5).") from None
        keys = {"imgs": "imgs", "classes": "latents/classes", "values": "latents/values"}
        missing = [k for k in keys.values() if k not in fh]
        if missing:
            fh.close()
            raise DataError(f"{source.name} has no {', '.join(repr(m) for m in missing)} (a dSprites .hdf5 holds "
                            f"'imgs', 'latents/classes' and 'latents/values').")
        return fh["imgs"], fh["latents/classes"][...], fh["latents/values"][...], fh.close
    try:
        npz = np.load(source, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{source} is not a readable .npz or .hdf5 file ({exc}).") from None
    missing = [k for k in ("imgs", "latents_classes", "latents_values") if k not in npz.files]
    if missing:
        npz.close()
        raise DataError(f"{source.name} has no {', '.join(repr(m) for m in missing)} (a dSprites .npz holds "
                        f"'imgs', 'latents_classes' and 'latents_values').")
    return npz["imgs"], npz["latents_classes"], npz["latents_values"], npz.close


def find_source(source: Path, name: str) -> tuple[Path, Path | None]:
    """The dSprites file (a file, or the one .hdf5/.npz in a folder) and, for scream_dsprites, scream.jpg."""
    main = source
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.name.startswith("dsprites")
                       and p.suffix.lower() in (".hdf5", ".h5", ".npz"))
        if not found:
            raise DataError(f"{source} holds no dsprites_*.hdf5 or .npz file.")
        main = found[0]
    scream = None
    if name == "scream_dsprites":
        scream = main.parent / SCREAM_FILE
        if not scream.is_file():
            raise DataError(f"scream_dsprites needs {SCREAM_FILE} beside {main.name} (in {main.parent}); "
                            f"`fqvae data download scream_dsprites` fetches both.")
    return main, scream


def plan(source: Path, name: str = "dsprites") -> SourcePlan:
    main, scream_path = find_source(Path(source), name)
    imgs, classes, values, close = _read(main)
    try:
        shape, dtype = tuple(imgs.shape), imgs.dtype
    finally:
        close()
    if dtype != np.uint8:
        raise DataError(f"{main.name}: 'imgs' are {dtype}, expected uint8.")
    if len(shape) != 3 or shape[1] != shape[2] or shape[0] == 0:
        raise DataError(f"{main.name}: 'imgs' have shape {shape}, expected (N, H, H).")
    n, size = shape[0], shape[1]
    if classes.shape != (n, 6) or values.shape != (n, 6):
        raise DataError(f"{main.name}: the latents have shapes {classes.shape} and {values.shape}, expected "
                        f"({n}, 6) each (colour, shape, scale, orientation, x, y).")
    if np.unique(classes[:, 0]).size != 1:
        raise DataError(f"{main.name}: the colour latent takes several values; dSprites has one colour.")
    space, codes = FactorSpace.from_labels(values[:, 1:], DSPRITES_FACTORS)
    if not np.array_equal(codes, classes[:, 1:]):
        row = int(np.argmax(np.any(codes != classes[:, 1:], axis=1)))
        raise DataError(f"{main.name}: row {row} has classes {classes[row, 1:].tolist()} but its values "
                        f"{values[row, 1:].tolist()} are the sorted positions {codes[row].tolist()}.")
    space.check_grid(codes, what="latent")
    notes = []
    if space.sizes != OFFICIAL_SIZES:
        notes.append(f"a reduced grid ({','.join(map(str, space.sizes))}), not the official "
                     f"({','.join(map(str, OFFICIAL_SIZES))})")
    colour = _colourer(name, scream_path)

    def fill(images: np.ndarray, bar: Progress) -> None:
        data, _, _, close_again = _read(main)
        try:
            for start in range(0, n, ROWS):
                stop = min(n, start + ROWS)
                mask = np.asarray(data[start:stop])
                if mask.max(initial=0) > 1:
                    raise DataError(f"{main.name}: 'imgs' hold values above 1 near image {start:,}; dSprites "
                                    f"images are 0/1 masks.")
                images[start:stop] = colour(mask, start)
                bar.advance(stop - start)
        finally:
            close_again()

    record = {"name": main.name, "size": main.stat().st_size, "format": main.suffix.lstrip(".").lower()}
    extra: dict = {"channels": "grayscale in three equal channels" if name == "dsprites" else "rgb"}
    if name != "dsprites":
        extra["variant"] = {"name": name, "seed": VARIANT_SEED,
                            "draw": "numpy default_rng([seed, image index]), once, at prepare"}
    if scream_path is not None:
        from fqvae_cli.files import sha256_file

        extra["variant"]["scream"] = {"name": scream_path.name, "sha256": sha256_file(scream_path)}
    return SourcePlan(space=space, image_size=size, fill=fill, notes=notes, source_path=main, source=record,
                      extra=extra)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _colourer(name: str, scream_path: Path | None):
    """mask block (b, H, W) of 0/1 starting at image `start` -> uint8 (b, H, W, 3)."""
    if name == "dsprites":
        return lambda mask, start: np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=3)
    scream = load_scream(scream_path) if scream_path is not None else None

    def colour(mask: np.ndarray, start: int) -> np.ndarray:
        out = np.empty((*mask.shape, 3), dtype=np.uint8)
        for k in range(mask.shape[0]):
            out[k] = variant_image(name, mask[k], start + k, scream)
        return out

    return colour


def variant_image(name: str, mask: np.ndarray, index: int, scream: np.ndarray | None = None,
                  seed: int = VARIANT_SEED) -> np.ndarray:
    """The variant's picture of one 0/1 mask: its draws come from default_rng([seed, index])."""
    rng = np.random.default_rng([seed, index])
    inside = mask.astype(bool)
    if name == "color_dsprites":  # mask x colour, rounded: the colour inside, 0 outside
        out = np.zeros((*mask.shape, 3), dtype=np.uint8)
        out[inside] = _to_uint8(rng.uniform(0.5, 1.0, size=3))
        return out
    if name == "noisy_dsprites":  # min(mask + noise, 1), rounded: 255 inside, the noise outside
        noise = _to_uint8(rng.uniform(0.0, 1.0, size=(*mask.shape, 3)))
        noise[inside] = 255
        return noise
    if name == "scream_dsprites":
        assert scream is not None
        h, w = mask.shape
        x = int(rng.integers(0, scream.shape[0] - h))
        y = int(rng.integers(0, scream.shape[1] - w))
        background = (scream[x:x + h, y:y + w] + rng.uniform(0.0, 1.0, size=3)) / 2.0
        background[inside] = 1.0 - background[inside]
        return _to_uint8(background)
    raise ValueError(name)


def load_scream(path: Path) -> np.ndarray:
    """The Scream as float RGB in [0, 1], thumbnailed to fit 350x274 as disentanglement_lib does."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail(SCREAM_BOX)
            arr = np.asarray(im, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path.name} is not a readable image ({exc}).") from None
    if arr.shape[0] <= 64 or arr.shape[1] <= 64:
        raise DataError(f"{path.name} is {arr.shape[1]}x{arr.shape[0]} after thumbnailing; patches of 64x64 need "
                        f"more.")
    return arr
