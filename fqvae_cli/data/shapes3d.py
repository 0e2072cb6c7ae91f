"""Shapes3D: `3dshapes.h5` with `images` uint8 (N, 64, 64, 3) and `labels` float64 (N, 6) factor
VALUES (floor, wall and object hue, scale, shape, orientation), a full grid in row-major order.

The factor grid is read from the labels (distinct values per column, float noise merged), and every
row is checked against the row-major order before anything is written. The official grid
(10, 10, 10, 8, 4, 15) is recognised; a smaller complete grid in the same layout (a test file, or
`fqvae data synth --grid small`) is accepted with a note."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fqvae_cli.console import Progress
from fqvae_cli.data.catalog import DATASETS, SHAPES3D_FACTORS
from fqvae_cli.data.factors import FactorSpace, SourcePlan
from fqvae_cli.errors import DataError

OFFICIAL_SIZES = DATASETS["shapes3d"].factor_sizes
OFFICIAL_IMAGE_SIZE = 64
# Rows per read: about 64 MB of uint8 images, rounded to whole HDF5 chunks.
READ_BYTES = 64 << 20


def _open(source: Path):
    import h5py  # heavy: data.store loads this module for every dataset command; only shapes3d reads HDF5

    try:
        return h5py.File(source, "r")
    except OSError:
        raise DataError(f"{source} is not a readable HDF5 file (expected 3dshapes.h5).") from None


def inspect(source: Path) -> tuple[FactorSpace, int, list[str]]:
    """Check a 3dshapes.h5-layout file; returns its factor space, image size and notes."""
    with _open(source) as fh:
        for key in ("images", "labels"):
            if key not in fh or not hasattr(fh[key], "shape"):
                raise DataError(f"{source.name} has no '{key}' dataset (a 3dshapes.h5 file holds "
                                f"'images' and 'labels'; found: {', '.join(sorted(fh.keys())) or 'nothing'}).")
        images, labels = fh["images"], fh["labels"]
        if images.dtype != np.uint8:
            raise DataError(f"{source.name}: 'images' are {images.dtype}, expected uint8.")
        if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"{source.name}: 'images' have shape {images.shape}, expected (N, H, H, 3).")
        if not np.issubdtype(labels.dtype, np.floating):
            raise DataError(f"{source.name}: 'labels' are {labels.dtype}, expected float64 factor values.")
        if labels.ndim != 2 or labels.shape[1] != len(SHAPES3D_FACTORS):
            raise DataError(f"{source.name}: 'labels' have shape {labels.shape}, expected "
                            f"(N, {len(SHAPES3D_FACTORS)}).")
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{source.name} has {images.shape[0]:,} images but {labels.shape[0]:,} label rows.")
        if images.shape[0] == 0:
            raise DataError(f"{source.name} holds no images.")
        values = labels[...]
        image_size = int(images.shape[1])
    space, codes = FactorSpace.from_labels(values, SHAPES3D_FACTORS)
    space.check_grid(codes, what="label")
    notes = []
    if space.sizes != OFFICIAL_SIZES:
        notes.append(f"a reduced grid ({','.join(map(str, space.sizes))}), not the official "
                     f"({','.join(map(str, OFFICIAL_SIZES))})")
    if image_size != OFFICIAL_IMAGE_SIZE:
        notes.append(f"{image_size}x{image_size} images (the official file has "
                     f"{OFFICIAL_IMAGE_SIZE}x{OFFICIAL_IMAGE_SIZE})")
    return space, image_size, notes


def plan(source: Path, name: str = "shapes3d") -> SourcePlan:
    source = Path(source)
    space, image_size, notes = inspect(source)

    def fill(images: np.ndarray, bar: Progress) -> None:
        with _open(source) as fh:
            ds = fh["images"]
            chunk_rows = ds.chunks[0] if ds.chunks else 1
            rows = max(chunk_rows, READ_BYTES // (image_size * image_size * 3) // chunk_rows * chunk_rows)
            for start in range(0, space.size, rows):
                stop = min(space.size, start + rows)
                ds.read_direct(images, np.s_[start:stop], np.s_[start:stop])
                bar.advance(stop - start)

    st = source.stat()
    return SourcePlan(space=space, image_size=image_size, fill=fill, notes=notes, source_path=source,
                      source={"name": source.name, "size": st.st_size, "format": "3dshapes.h5"})
