"""Cars3D (Reed et al. 2015): `nips2015-analogy-data.tar.gz`, whose `data/cars/` holds `list.txt` (the
object order) and one `car_NNN_mesh.mat` per object with `im` uint8 (128, 128, 3, 24, 4): rows,
columns, RGB, azimuth, elevation. Factors in disentanglement_lib's order: elevation 4, azimuth 24,
object 183, row-major, so image index = (elevation x 24 + azimuth) x 183 + object.

Objects follow `list.txt` (disent's order); without it, sorted file names. Each 128x128 image is
resized ONCE to 64x64 with PIL's Lanczos filter (what disentanglement_lib's `thumbnail(..., ANTIALIAS)`
does to a square image), not at every read. The archive is read in its own order, one .mat at a time,
so the 17,568 images never sit in memory at 128x128. Also accepted: the extracted `data/cars` folder
(or a folder holding `data/` or `cars/`)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fqvae_cli.console import Progress
from fqvae_cli.data.catalog import CARS3D_FACTORS, DATASETS
from fqvae_cli.data.factors import FactorSpace, SourcePlan
from fqvae_cli.errors import DataError

TARGET_SIZE = 64
OFFICIAL_SIZES = DATASETS["cars3d"].factor_sizes


class _Archive:
    """The car .mat files and list.txt of a tar.gz or a folder, by base name."""

    def __init__(self, path: Path):
        self.path = path
        self.tar: tarfile.TarFile | None = None
        if path.is_dir():
            lists = [p for p in (path / "list.txt", path / "cars" / "list.txt", path / "data" / "cars" / "list.txt")
                     if p.is_file()]
            folder = lists[0].parent if lists else next(
                (f for f in (path, path / "cars", path / "data" / "cars") if list(f.glob("car_*_mesh.mat"))), None)
            if folder is None:
                raise DataError(f"{path} holds no car_*_mesh.mat files (expected the data/cars folder of "
                                f"nips2015-analogy-data.tar.gz).")
            self.mats = {p.stem: p for p in sorted(folder.glob("car_*_mesh.mat"))}
            self.list_text = (folder / "list.txt").read_text() if (folder / "list.txt").is_file() else None
        else:
            try:
                self.tar = tarfile.open(path, "r:*")
                members = self.tar.getmembers()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(f"{path.name} is not a readable tar archive ({exc}).") from None
            cars = [m for m in members if m.isfile() and "/cars/" in f"/{m.name}"]
            self.mats = {Path(m.name).stem: m for m in cars if m.name.endswith("_mesh.mat")}
            lists = [m for m in cars if m.name.endswith("/list.txt") or m.name == "cars/list.txt"]
            self.list_text = self.tar.extractfile(lists[0]).read().decode() if lists else None
        if not self.mats:
            raise DataError(f"{path.name} holds no cars/car_*_mesh.mat files.")

    def order(self) -> list[str]:
        if self.list_text is None:
            return sorted(self.mats)
        names = [line.strip() for line in self.list_text.splitlines() if line.strip()]
        missing = [n for n in names if n not in self.mats]
        if missing:
            raise DataError(f"list.txt names {missing[0]}, which is not in {self.path.name}.")
        return names

    def read(self, name: str) -> np.ndarray:
        from scipy.io import loadmat  # heavy; only cars3d reads MATLAB files

        item = self.mats[name]
        try:
            data = item.read_bytes() if isinstance(item, Path) else self.tar.extractfile(item).read()
            im = loadmat(io.BytesIO(data))["im"]
        except (KeyError, ValueError, OSError, TypeError) as exc:
            raise DataError(f"{name}.mat in {self.path.name} has no readable 'im' array ({exc}).") from None
        if im.dtype != np.uint8 or im.ndim != 5 or im.shape[2] != 3 or im.shape[0] != im.shape[1]:
            raise DataError(f"{name}.mat: 'im' is {im.dtype} {im.shape}, expected uint8 (H, H, 3, azimuths, "
                            f"elevations).")
        return im

    def in_archive_order(self, wanted: list[str]) -> Iterator[str]:
        """The wanted names in the order they sit in the archive (forward reads of a compressed tar)."""
        if self.tar is None:
            yield from wanted
            return
        position = {m.name: i for i, m in enumerate(self.tar.getmembers())}
        yield from sorted(wanted, key=lambda n: position[self.mats[n].name])

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _resize(im: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if im.shape[0] == size:
        return im
    return np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def plan(source: Path, name: str = "cars3d", image_size: int = TARGET_SIZE) -> SourcePlan:
    source = Path(source)
    archive = _Archive(source)
    try:
        order = archive.order()
        first = archive.read(order[0])
    finally:
        archive.close()
    h, _, _, n_azimuth, n_elevation = first.shape
    if h < image_size:
        raise DataError(f"{order[0]}.mat holds {h}x{h} images, smaller than {image_size}x{image_size}.")
    sizes = (n_elevation, n_azimuth, len(order))
    space = FactorSpace(CARS3D_FACTORS, sizes)
    notes = [] if sizes == OFFICIAL_SIZES else [
        f"a reduced grid ({','.join(map(str, sizes))}), not the official ({','.join(map(str, OFFICIAL_SIZES))})"]
    objects = {n: i for i, n in enumerate(order)}

    def fill(images: np.ndarray, bar: Progress) -> None:
        reader = _Archive(source)
        try:
            for car in reader.in_archive_order(order):
                im = reader.read(car)
                if im.shape != first.shape:
                    raise DataError(f"{car}.mat: 'im' has shape {im.shape}, the others {first.shape}.")
                o = objects[car]
                for e in range(n_elevation):
                    for a in range(n_azimuth):
                        images[(e * n_azimuth + a) * len(order) + o] = _resize(im[:, :, :, a, e], image_size)
                bar.advance(n_elevation * n_azimuth)
        finally:
            reader.close()

    record = {"name": source.name, "format": "folder" if source.is_dir() else "tar",
              "objects": "list.txt order" if archive.list_text is not None else "sorted file names"}
    if source.is_file():
        record["size"] = source.stat().st_size
    return SourcePlan(space=space, image_size=image_size, fill=fill, notes=notes,
                      source_path=source if source.is_file() else None, source=record,
                      extra={"downsampled_from": f"{h}x{h}, PIL Lanczos"})
