"""Isaac3D and Falcor3D (the NVlabs High-res-disentanglement-datasets release): a folder (or a zip of it)
holding `images/{i:06d}.png` (128x128 RGB) and a labels array of factor values, a full grid in row-major
order: `Isaac3D_down128/labels.npy` (N, 9) in [0, 1], or `Falcor3D_down128/train-rec.labels` (N, 7, an
.npy file under another name).

Images are downsampled ONCE to 64x64 with antialiased bicubic (PIL's BICUBIC widens its kernel
when it shrinks), not at every read. Labels become codes through the tolerant `np.unique` inverse
(truncating `v * k` mislabels robot_x), and the row-major order is checked row by row. PNG decoding
is the slow part, so it runs on a thread pool (PIL releases the GIL while it decodes and resizes)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fqvae_cli.console import Progress
from fqvae_cli.data.catalog import DATASETS, FALCOR3D_FACTORS, ISAAC3D_FACTORS
from fqvae_cli.data.factors import FactorSpace, SourcePlan
from fqvae_cli.errors import DataError

OFFICIAL_SIZES = DATASETS["isaac3d"].factor_sizes
# name -> (labels file, factor names, official folder name)
LAYOUTS = {"isaac3d": ("labels.npy", ISAAC3D_FACTORS, "Isaac3D_down128"),
           "falcor3d": ("train-rec.labels", FALCOR3D_FACTORS, "Falcor3D_down128")}
TARGET_SIZE = 64
SOURCE_SIZE = 128
CHUNK = 512  # images decoded per batch


class _Source:
    """Reads the labels file and `images/{i:06d}.png` from a folder or a zip, wherever they sit (at the
    top or one folder down, as in the official `Isaac3D_down128/`)."""

    def __init__(self, path: Path, labels: str = "labels.npy"):
        self.path = path
        self.labels_name = labels
        self.zip: zipfile.ZipFile | None = None
        if path.is_dir():
            candidates = [path / labels] if (path / labels).is_file() else sorted(path.glob(f"*/{labels}"))
            if len(candidates) != 1:
                raise DataError(f"{path} holds {'no' if not candidates else 'several'} {labels} (expected "
                                f"{labels} and images/ in it or in one folder below it).")
            self.base = candidates[0].parent
            self.labels_path: Path | None = candidates[0]
            self.prefix = ""
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            found = sorted((n for n in self.zip.namelist() if n.rsplit("/", 1)[-1] == labels),
                           key=lambda n: n.count("/"))
            if not found:
                raise DataError(f"{path.name} holds no {labels}.")
            self.prefix = found[0][: -len(labels)]
            self.labels_path = None
        else:
            raise DataError(f"{path} is neither a folder nor a zip file.")

    def labels(self) -> np.ndarray:
        try:
            if self.zip is not None:
                return np.load(io.BytesIO(self.zip.read(self.prefix + self.labels_name)), allow_pickle=False)
            return np.load(self.labels_path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{self.labels_name} in {self.path.name} cannot be read ({exc}).") from None

    def image_name(self, i: int) -> str:
        return f"images/{i:06d}.png"

    def read(self, i: int) -> bytes:
        name = self.image_name(i)
        try:
            if self.zip is not None:
                return self.zip.read(self.prefix + name)
            return (self.base / name).read_bytes()
        except (KeyError, FileNotFoundError):
            raise DataError(f"image {name} is missing from {self.path.name}.") from None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _decoder(target: int) -> Callable[[tuple[str, bytes]], np.ndarray]:
    from PIL import Image, UnidentifiedImageError  # heavy: data.store loads this module; only isaac3d decodes

    def decode(item: tuple[str, bytes]) -> np.ndarray:
        name, data = item
        try:
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB")
                if im.size[0] != im.size[1] or im.size[0] < target:
                    raise DataError(f"image {name} is {im.size[0]}x{im.size[1]}, expected a square of at least "
                                    f"{target}x{target} (the official images are {SOURCE_SIZE}x{SOURCE_SIZE}).")
                if im.size[0] != target:
                    im = im.resize((target, target), Image.Resampling.BICUBIC)
                return np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image {name} is not a readable PNG ({exc}).") from None

    return decode


def plan(source: Path, name: str = "isaac3d", image_size: int = TARGET_SIZE) -> SourcePlan:
    source = Path(source)
    labels_name, factors, _ = LAYOUTS[name]
    official = DATASETS[name].factor_sizes
    src = _Source(source, labels_name)
    try:
        labels = src.labels()
        if labels.ndim != 2 or labels.shape[1] != len(factors) or labels.shape[0] == 0:
            raise DataError(f"{labels_name} has shape {labels.shape}, expected (N, {len(factors)}).")
        if not np.issubdtype(labels.dtype, np.floating):
            raise DataError(f"{labels_name} holds {labels.dtype}, expected float factor values.")
        space, codes = FactorSpace.from_labels(labels, factors)
        space.check_grid(codes, what="label")
        first = _decoder(image_size)((src.image_name(0), src.read(0)))
        src.read(space.size - 1)  # a truncated copy is refused before anything is written
    finally:
        src.close()
    notes = []
    if space.sizes != official:
        notes.append(f"a reduced grid ({','.join(map(str, space.sizes))}), not the official "
                     f"({','.join(map(str, official))})")
    del first

    def fill(images: np.ndarray, bar: Progress) -> None:
        reader = _Source(source, labels_name)
        decode = _decoder(image_size)
        try:
            with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
                for start in range(0, space.size, CHUNK):
                    stop = min(space.size, start + CHUNK)
                    batch = [(reader.image_name(i), reader.read(i)) for i in range(start, stop)]
                    for k, arr in enumerate(pool.map(decode, batch)):
                        images[start + k] = arr
                    bar.advance(stop - start)
        finally:
            reader.close()

    if source.is_dir():
        labels_file = src.labels_path
        assert labels_file is not None
        record = {"name": source.name, "size": labels_file.stat().st_size, "format": "folder",
                  "hashed": labels_name}
        hashed: Path = labels_file
    else:
        record = {"name": source.name, "size": source.stat().st_size, "format": "zip"}
        hashed = source
    record["n_images"] = space.size
    return SourcePlan(space=space, image_size=image_size, fill=fill, notes=notes, source_path=hashed,
                      source=record, extra={"downsampled_from": "png, antialiased bicubic"})
