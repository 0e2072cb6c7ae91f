"""MPI3D: an `.npz` with one array `images` uint8 (N, 64, 64, 3) and NO labels; the factor codes are
implied by the row-major index. The layout follows from N:

- 460,800 images: MPI3D-complex (`real3d_complicated_shapes_ordered.npz`), sizes (4,4,2,3,3,40,40);
  the paper's "MPI3D". Prepared as `mpi3d`.
- 1,036,800 images: `mpi3d_{toy,realistic,real}.npz`, sizes (6,6,2,3,3,40,40). Prepared as
  `mpi3d_toy`, `mpi3d_realistic` or `mpi3d_real`. Applying the complex sizes to these files (an old
  framework bug) mislabels colour and shape, so a name whose layout does not match N is refused.

`--factor-sizes` states another layout (reduced test files). The array is streamed out of the zip
member (stored or deflated) in chunks, so a 12 GB file never has to fit in memory."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from fqvae_cli.console import Progress
from fqvae_cli.data.catalog import DATASETS, MPI3D_FACTORS
from fqvae_cli.data.factors import FactorSpace, SourcePlan
from fqvae_cli.errors import DataError, UsageError

COMPLEX_SIZES = (4, 4, 2, 3, 3, 40, 40)
FULL_SIZES = (6, 6, 2, 3, 3, 40, 40)
VARIANTS = {math.prod(COMPLEX_SIZES): ("complex", COMPLEX_SIZES),
            math.prod(FULL_SIZES): ("toy/realistic/real", FULL_SIZES)}
READ_BYTES = 64 << 20


@contextmanager
def open_images(source: Path) -> Iterator[tuple[IO[bytes], tuple[int, ...], np.dtype]]:
    """The raw byte stream of the `images` array in an .npz (or a bare .npy), positioned at the
    first element, with the array's shape and dtype from its header."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = zf.namelist()
            if "images.npy" not in names:
                keys = ", ".join(n.removesuffix(".npy") for n in names) or "nothing"
                raise DataError(f"{source.name} has no 'images' array (found: {keys}).")
            with zf.open("images.npy") as fh:
                yield (fh, *_header(fh, source))
    else:
        with open(source, "rb") as fh:
            yield (fh, *_header(fh, source))


def _header(fh: IO[bytes], source: Path) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy format version {version}")
    except ValueError as exc:
        raise DataError(f"{source.name} is not an .npz/.npy array file ({exc}).") from None
    if fortran:
        raise DataError(f"{source.name}: 'images' are stored in Fortran order, expected C order.")
    return tuple(shape), dtype


def resolve_sizes(name: str, n: int, factor_sizes: list[int] | None) -> tuple[tuple[int, ...], str]:
    """Factor sizes and a variant label for a file of n images prepared under `name`."""
    if factor_sizes is not None:
        sizes = tuple(int(s) for s in factor_sizes)
        if len(sizes) != len(MPI3D_FACTORS) or any(s < 1 for s in sizes):
            raise UsageError(f"--factor-sizes needs {len(MPI3D_FACTORS)} positive sizes "
                             f"({', '.join(MPI3D_FACTORS)}), got {list(factor_sizes)}.")
        if math.prod(sizes) != n:
            raise DataError(f"--factor-sizes {','.join(map(str, sizes))} give {math.prod(sizes):,} "
                            f"combinations but the file holds {n:,} images.")
        return sizes, "custom"
    if n not in VARIANTS:
        raise DataError(f"the file holds {n:,} images, which matches neither MPI3D-complex (460,800) nor "
                        f"MPI3D toy/realistic/real (1,036,800); pass --factor-sizes for another layout.")
    variant, sizes = VARIANTS[n]
    expected = DATASETS[name].factor_sizes
    if sizes != expected:
        others = [k for k, s in DATASETS.items() if k.startswith("mpi3d") and s.factor_sizes == sizes]
        raise DataError(f"the file holds {n:,} images, the MPI3D {variant} layout "
                        f"({','.join(map(str, sizes))}), not the layout of '{name}' "
                        f"({','.join(map(str, expected))}); prepare it as {' or '.join(others)}.")
    return sizes, variant


def plan(source: Path, name: str = "mpi3d", factor_sizes: list[int] | None = None) -> SourcePlan:
    source = Path(source)
    with open_images(source) as (_, shape, dtype):
        pass
    if dtype != np.uint8:
        raise DataError(f"{source.name}: 'images' are {dtype}, expected uint8.")
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or shape[0] == 0:
        raise DataError(f"{source.name}: 'images' have shape {shape}, expected (N, H, H, 3).")
    n, image_size = shape[0], shape[1]
    sizes, variant = resolve_sizes(name, n, factor_sizes)
    space = FactorSpace(MPI3D_FACTORS, sizes)
    notes = [] if variant != "custom" else [f"custom layout {','.join(map(str, sizes))} from --factor-sizes"]

    def fill(images: np.ndarray, bar: Progress) -> None:
        row_bytes = image_size * image_size * 3
        rows = max(1, READ_BYTES // row_bytes)
        flat = images.reshape(n, row_bytes)
        with open_images(source) as (fh, _, _):
            for start in range(0, n, rows):
                stop = min(n, start + rows)
                want = (stop - start) * row_bytes
                data = fh.read(want)
                if len(data) != want:
                    raise DataError(f"{source.name} ends early: image {start + len(data) // row_bytes:,} "
                                    f"of {n:,} is missing.")
                flat[start:stop] = np.frombuffer(data, dtype=np.uint8).reshape(stop - start, row_bytes)
                bar.advance(stop - start)

    st = source.stat()
    return SourcePlan(space=space, image_size=image_size, fill=fill, notes=notes, source_path=source,
                      source={"name": source.name, "size": st.st_size, "format": "npz"},
                      extra={"variant": variant})
