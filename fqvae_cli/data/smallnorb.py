"""SmallNORB (LeCun et al. 2004), from NYU's `smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat.gz`
and `smallnorb-5x01235x9x18x6x2x96x96-testing-*` files (gzipped or not). Each is a NORB binary matrix: an
int32 magic (0x1E3D4C55 bytes, 0x1E3D4C54 int32), an int32 rank, max(3, rank) int32 dimensions, then the
little-endian data, last index fastest. `dat` is uint8 (N, 2, 96, 96), a stereo pair per row (camera 0
is used, as disentanglement_lib and disent do); `cat` is int32 (N,) the category; `info` is int32 (N, 4):
instance, elevation (0-8), azimuth (0, 2, ..., 34) and lighting (0-5). Rows are in no grid order: each is
placed at its row-major position, and every position must be filled exactly once.

Two conventions:
- `smallnorb` (disentanglement_lib `data/ground_truth/norb.py`, the field's study): the training and the
  testing files, 48,600 images; factors category 5, instance 10, elevation 9, azimuth 18, lighting 6,
  with the instance a nuisance (meta.json `nuisance_factors`): the reference scores the other four and
  draws the instance at random for each observation.
- `smallnorb_disent` (nmichlo/disent `_groundtruth__norb.py`): the training file only, 24,300 images, the
  instance (5 values there) an ordinary factor.
Values become codes by rank (azimuth 0, 2, ..., 34 -> 0..17, as the reference's azimuth / 2). Images are
resized ONCE from 96x96 to 64x64 with PIL's Lanczos filter (disentanglement_lib's ANTIALIAS) and stored
in three equal channels."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from fqvae_cli.console import Progress
from fqvae_cli.data.catalog import SMALLNORB_FACTORS
from fqvae_cli.data.factors import FactorSpace, SourcePlan, unique_values
from fqvae_cli.errors import DataError

TARGET_SIZE = 64
MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C56: np.int16, 0x1E3D4C51: np.float32,
         0x1E3D4C53: np.float64}
PARTS = {"smallnorb": ("training", "testing"), "smallnorb_disent": ("training",)}
OFFICIAL_SIZES = {"smallnorb": (5, 10, 9, 18, 6), "smallnorb_disent": (5, 5, 9, 18, 6)}
NUISANCE = {"smallnorb": ["instance"], "smallnorb_disent": []}
ROWS = 2048


def read_matrix(path: Path) -> np.ndarray:
    """A NORB binary matrix (.mat or .mat.gz) as a numpy array."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path.name} cannot be read ({exc}).") from None
    if len(raw) < 20:
        raise DataError(f"{path.name} is too short for a NORB matrix header.")
    magic, rank = (int(x) for x in np.frombuffer(raw, "<i4", 2))
    if magic not in MAGIC or not 1 <= rank <= 8:
        raise DataError(f"{path.name} is not a NORB binary matrix (magic {magic:#x}, rank {rank}).")
    stored = max(3, rank)
    dims = tuple(int(d) for d in np.frombuffer(raw, "<i4", stored, 8)[:rank])
    dtype = np.dtype(MAGIC[magic]).newbyteorder("<")
    offset = 8 + 4 * stored
    count = int(np.prod(dims))
    if len(raw) - offset != count * dtype.itemsize:
        raise DataError(f"{path.name} holds {len(raw) - offset:,} data bytes, its header promises "
                        f"{count * dtype.itemsize:,} ({'x'.join(map(str, dims))} {dtype.name}).")
    return np.frombuffer(raw, dtype, count, offset).reshape(dims)


def find_files(source: Path, name: str) -> dict[str, dict[str, Path]]:
    """part -> kind -> path of the files `name` reads, in `source` (a folder, or one of the files)."""
    folder = source if source.is_dir() else source.parent
    found: dict[str, dict[str, Path]] = {}
    for part in PARTS[name]:
        for kind in ("dat", "cat", "info"):
            hits = sorted(folder.glob(f"smallnorb-*-{part}-{kind}.mat*"))
            hits = [h for h in hits if h.name.endswith((".mat", ".mat.gz"))]
            if not hits:
                raise DataError(f"{name} needs smallnorb-*-{part}-{kind}.mat(.gz) in {folder}; "
                                f"`fqvae data download {name}` fetches every file.")
            found.setdefault(part, {})[kind] = hits[0]
    return found


def plan(source: Path, name: str = "smallnorb", image_size: int = TARGET_SIZE) -> SourcePlan:
    files = find_files(Path(source), name)
    labels = []
    for part, kinds in files.items():
        cat, info = read_matrix(kinds["cat"]), read_matrix(kinds["info"])
        if cat.ndim != 1 or info.ndim != 2 or info.shape != (cat.shape[0], 4):
            raise DataError(f"the {part} labels have shapes {cat.shape} and {info.shape}, expected (N,) and (N, 4).")
        labels.append(np.column_stack([cat, info]).astype(np.float64))
    all_labels = np.concatenate(labels)
    columns = [unique_values(all_labels[:, j]) for j in range(5)]
    space = FactorSpace(SMALLNORB_FACTORS, [len(v) for v, _ in columns], [v.tolist() for v, _ in columns])
    codes = np.stack([inv for _, inv in columns], axis=1)
    position = space.ravel(codes)
    if position.size != space.size or np.unique(position).size != space.size:
        counts = np.bincount(position, minlength=space.size)
        gap = int(np.argmax(counts != 1))
        raise DataError(f"the labels do not cover the {'x'.join(map(str, space.sizes))} grid once each: "
                        f"combination {space.unravel(gap).tolist()} appears {int(counts[gap])} times.")
    shapes = {part: read_matrix_header(kinds["dat"]) for part, kinds in files.items()}
    for (part, shape), lab in zip(shapes.items(), labels, strict=True):
        if len(shape) != 4 or shape[0] != lab.shape[0] or shape[2] != shape[3] or shape[2] < image_size:
            raise DataError(f"the {part} images are {shape}, expected ({lab.shape[0]}, 2, H, H) with H >= "
                            f"{image_size}.")
    notes = []
    if space.sizes != OFFICIAL_SIZES[name]:
        notes.append(f"a reduced grid ({','.join(map(str, space.sizes))}), not the official "
                     f"({','.join(map(str, OFFICIAL_SIZES[name]))})")

    def fill(images: np.ndarray, bar: Progress) -> None:
        start = 0
        for kinds in files.values():
            dat = read_matrix(kinds["dat"])
            where = position[start:start + dat.shape[0]]
            for a in range(0, dat.shape[0], ROWS):
                block = dat[a:a + ROWS, 0]
                for k in range(block.shape[0]):
                    images[where[a + k]] = _resize(block[k], image_size)[..., None]  # into all 3 channels
                bar.advance(block.shape[0])
            start += dat.shape[0]
            del dat

    main = files["training"]["dat"]
    record = {"name": main.name, "size": main.stat().st_size, "format": "norb binary matrix",
              "files": sorted(p.name for kinds in files.values() for p in kinds.values())}
    extra = {"nuisance_factors": NUISANCE[name], "channels": "grayscale in three equal channels",
             "downsampled_from": "96x96 camera 0, PIL Lanczos",
             "convention": "disentanglement_lib" if name == "smallnorb" else "disent"}
    return SourcePlan(space=space, image_size=image_size, fill=fill, notes=notes, source_path=main,
                      source=record, extra=extra)


def read_matrix_header(path: Path) -> tuple[int, ...]:
    """The dimensions of a NORB matrix, read from its header only."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(8 + 4 * 8)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path.name} cannot be read ({exc}).") from None
    magic, rank = (int(x) for x in np.frombuffer(head[:8], "<i4", 2))
    if magic not in MAGIC or not 1 <= rank <= 8:
        raise DataError(f"{path.name} is not a NORB binary matrix (magic {magic:#x}, rank {rank}).")
    return tuple(int(d) for d in np.frombuffer(head, "<i4", rank, 8))


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if img.shape[0] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
