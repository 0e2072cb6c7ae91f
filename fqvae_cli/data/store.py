"""The prepared dataset store.

A prepared dataset is the folder `<data root>/<name>/` holding
- `images.npy`: uint8 (N, H, W, 3), contiguous, opened memory-mapped (never loaded whole),
- `codes.npy`: int64 (N, F) factor codes of each image (row-major grid order),
- `meta.json`: factor names, sizes and values, image size, the source file (name, size, sha256),
  format version and creation time.
It is written in a hidden temporary folder beside the target and renamed into place only when
complete, so an interrupted prepare never leaves anything that looks valid. A per-name lock file
serialises builders, so several workers asking for the built-in dataset at once build it once, and
a builder that holds the lock may delete partial folders left by a killed one."""

from __future__ import annotations

import inspect
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli import paths
from fqvae_cli.console import info, progress, warn
from fqvae_cli.data import cars3d, dsprites, isaac3d, mpi3d, shapes3d, smallnorb, synthetic
from fqvae_cli.data.catalog import DATASETS, get_dataset_spec
from fqvae_cli.data.factors import FactorSpace, SourcePlan
from fqvae_cli.errors import DataError, NotFoundError, UsageError
from fqvae_cli.files import atomic_dir, atomic_write_json, check_free_space, make_dirs, sha256_file

FORMAT_VERSION = 1
IMAGES_FILE = "images.npy"
CODES_FILE = "codes.npy"
META_FILE = "meta.json"
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
# The authors' split: one permutation with seed 1; every train/test split of a dataset is this one.
SPLIT_SEED = 1


def dataset_dir(name: str, root: Path | str | None = None) -> Path:
    return paths.data_root(root) / name


def is_prepared(name: str, root: Path | str | None = None) -> bool:
    return (dataset_dir(name, root) / META_FILE).is_file()


class PreparedDataset:
    """A prepared dataset: memory-mapped uint8 images, factor codes and metadata."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise NotFoundError(f"no prepared dataset at {self.path} ({META_FILE} is missing).")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
            self.space = FactorSpace.from_dict(self.meta)
            version = int(self.meta["format_version"])
            self.name: str = self.meta["name"]
            self.image_size: int = int(self.meta["image_size"])
        except (ValueError, KeyError, TypeError, UsageError) as exc:
            raise DataError(f"the prepared dataset at {self.path} has an unreadable {META_FILE} ({exc}); "
                            f"prepare it again with --force.") from None
        if version != FORMAT_VERSION:
            raise DataError(f"the prepared dataset at {self.path} has format version {version}, this fqvae "
                            f"reads version {FORMAT_VERSION}; prepare it again with --force.")
        n, s, f = self.space.size, self.image_size, self.space.n_factors
        try:
            self.images: np.memmap = np.load(self.path / IMAGES_FILE, mmap_mode="r", allow_pickle=False)
            self.codes: np.ndarray = np.load(self.path / CODES_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"the prepared dataset at {self.path} is damaged ({exc}); "
                            f"prepare it again with --force.") from None
        if self.images.shape != (n, s, s, 3) or self.images.dtype != np.uint8:
            raise DataError(f"the prepared dataset at {self.path} is damaged: {IMAGES_FILE} holds "
                            f"{self.images.dtype} {self.images.shape}, expected uint8 {(n, s, s, 3)}.")
        if self.codes.shape != (n, f) or not np.issubdtype(self.codes.dtype, np.integer):
            raise DataError(f"the prepared dataset at {self.path} is damaged: {CODES_FILE} holds "
                            f"{self.codes.dtype} {self.codes.shape}, expected integers {(n, f)}.")
        self._splits: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return f"PreparedDataset({self.name!r}, n={len(self)}, image_size={self.image_size}, {self.space!r})"

    def split(self, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
        """Deterministic 80/10/10 train/val/test split: a permutation seeded by `seed`, cut in three.
        Each part is returned sorted (memory-map friendly); the same seed gives the same parts."""
        if seed not in self._splits:
            n = len(self)
            perm = np.random.default_rng(seed).permutation(n)
            n_train = int(round(SPLIT_FRACTIONS[0] * n))
            n_val = int(round(SPLIT_FRACTIONS[1] * n))
            self._splits[seed] = {
                "train": np.sort(perm[:n_train]),
                "val": np.sort(perm[n_train:n_train + n_val]),
                "test": np.sort(perm[n_train + n_val:]),
            }
        return {k: v.copy() for k, v in self._splits[seed].items()}

    def images_at(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """uint8 (n, H, W, 3) images at dataset indices, in the order asked. Reads go in sorted order
        so the memory map is walked forwards."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise UsageError(f"image indices must lie in [0, {len(self)}).")
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.size, *self.images.shape[1:]), dtype=np.uint8)
        out[order] = self.images[idx[order]]
        return out

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def summary(self) -> dict[str, Any]:
        """Everything `fqvae data info --json` prints."""
        splits = self.split()
        return {
            "name": self.name,
            "path": str(self.path),
            "n_images": len(self),
            "image_size": self.image_size,
            **self.space.to_dict(),
            "source": self.meta.get("source"),
            "notes": self.meta.get("notes", []),
            "format_version": self.meta["format_version"],
            "created": self.meta.get("created"),
            "split": {k: int(v.size) for k, v in splits.items()},
            "disk_bytes": self.disk_bytes(),
        }


# ---- writing ------------------------------------------------------------------------------------

def source_identity(source: dict[str, Any] | None) -> dict[str, Any]:
    """The part of a source record that says whether two prepares read the same thing (no hash:
    hashing a multi-gigabyte file only to find it unchanged is not worth it)."""
    return {k: v for k, v in (source or {}).items() if k not in ("sha256",)}


@contextmanager
def _build_lock(root: Path, name: str) -> Iterator[None]:
    make_dirs(root, f"dataset '{name}'", DataError, "point --root or FQVAE_DATA at a writable folder")
    lock_path = root / f".{name}.lock"
    with open(lock_path, "a+") as fh:
        try:
            import fcntl  # POSIX only: the except below handles other platforms
        except ImportError:  # no advisory locks on this platform; atomic renames still protect readers
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_stale(root: Path, name: str) -> None:
    # Only called under the build lock: any partial folder of this name belongs to a dead builder.
    for pattern in (f".{name}.*.partial", f".{name}.old-*"):
        for p in root.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def _fsync_files(folder: Path) -> None:
    """On disk before the folder is renamed into place (its files already have the umask's mode:
    numpy creates them as any file is, and atomic_dir gives the folder its mode)."""
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


def write_store(name: str, plan: SourcePlan, root: Path | str | None = None, *,
                existing: str = "error") -> tuple[PreparedDataset, bool]:
    """Write a prepared dataset from a plan, atomically. `existing` says what to do when `name` is
    already prepared: 'error' (refuse), 'use' (open it) or 'replace'. Returns (dataset, written)."""
    if existing not in ("error", "use", "replace"):
        raise ValueError(existing)
    root_path = paths.data_root(root)
    target = root_path / name
    n, s = plan.space.size, plan.image_size
    with _build_lock(root_path, name):
        if target.exists() and existing != "replace":
            if existing == "use" and (target / META_FILE).is_file():
                return PreparedDataset(target), False
            raise UsageError(f"dataset '{name}' already exists at {target}; pass --force to replace it.")
        _remove_stale(root_path, name)
        check_free_space(root_path, n * (s * s * 3 + 8 * plan.space.n_factors), f"preparing {name}")
        try:
            source = dict(plan.source)
            with atomic_dir(target, replace=existing == "replace") as tmp:
                images = np.lib.format.open_memmap(tmp / IMAGES_FILE, mode="w+", dtype=np.uint8,
                                                   shape=(n, s, s, 3))
                with progress(f"preparing {name}", total=n, unit="img") as bar:
                    plan.fill(images, bar)
                    if bar.completed != n:
                        raise DataError(f"the source gave {bar.completed:,} images where {n:,} were expected.")
                    bar.status("flushing")
                    images.flush()
                del images
                np.save(tmp / CODES_FILE, plan.space.all_codes(), allow_pickle=False)
                if plan.source_path is not None and source.get("sha256") is None:
                    info(f"hashing {plan.source_path.name} for the record")
                    source["sha256"] = sha256_file(plan.source_path)
                meta = {
                    "name": name,
                    **plan.space.to_dict(),
                    "n_images": n,
                    "image_size": s,
                    "source": source,
                    "notes": list(plan.notes),
                    **plan.extra,
                    "format_version": FORMAT_VERSION,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
                # meta.json last: a folder without it is never taken for a prepared dataset.
                atomic_write_json(tmp / META_FILE, meta)
                _fsync_files(tmp)
        except KeyboardInterrupt:
            # atomic_dir has removed the partial folder by now; say so, as the stop may come minutes into a
            # first-use render that the user never asked for by name.
            then = ("the copy prepared before is kept as it was" if target.exists()
                    else "the next command that needs it starts over")
            warn(f"stopped preparing dataset '{name}' before it was complete; nothing was kept half-written (its "
                 f"partial files were removed) and {then}.")
            raise
        return PreparedDataset(target), True


# ---- entry points -------------------------------------------------------------------------------

def open_dataset(name: str, root: Path | str | None = None, *, build: bool = True) -> PreparedDataset:
    """Open a prepared dataset by name. The built-in `synth3d` is rendered on first use (unless
    build=False); any other dataset must have been prepared from its source file first."""
    spec = get_dataset_spec(name)
    target = dataset_dir(name, root)
    if (target / META_FILE).is_file():
        return PreparedDataset(target)
    if spec.built_in and build:
        ds, _ = prepare(name, root=root, existing="use")
        return ds
    # The one message for a missing dataset: it names the command that gets it.
    raise NotFoundError(f"dataset '{name}' is not {'built yet' if spec.built_in else 'prepared'} under "
                        f"{target.parent}; run {spec.how_to_get()}.")


# Converter names (DatasetSpec.converter) -> plan(source, name[, factor_sizes]); the built-in dataset is
# rendered by fqvae_cli.data.synthetic instead.
CONVERTERS: dict[str, Callable[..., SourcePlan]] = {
    "shapes3d": shapes3d.plan,
    "mpi3d": mpi3d.plan,
    "isaac3d": isaac3d.plan,
    "falcor3d": isaac3d.plan,
    "dsprites": dsprites.plan,
    "cars3d": cars3d.plan,
    "smallnorb": smallnorb.plan,
}


def prepare(name: str, source: Path | str | None = None, *, root: Path | str | None = None,
            force: bool = False, grid: str | None = None, factor_sizes: list[int] | None = None,
            existing: str | None = None, source_record: dict[str, Any] | None = None,
            ) -> tuple[PreparedDataset, bool]:
    """Convert a source into the store (or render the built-in dataset). Returns (dataset, written):
    preparing again from the same source is a no-op; a different source needs force=True.
    `source_record` adds to meta.json's source record (a download's URL and verified hashes; a sha256
    given here is not computed again)."""
    spec = get_dataset_spec(name)
    if grid is not None and not spec.built_in:
        raise UsageError(f"--grid applies to the built-in dataset only, not to '{name}'.")
    takes_sizes = spec.converter in CONVERTERS and "factor_sizes" in inspect.signature(
        CONVERTERS[spec.converter]).parameters
    if factor_sizes is not None and not takes_sizes:
        raise UsageError(f"--factor-sizes applies to the mpi3d datasets only, not to '{name}'.")
    if spec.built_in:
        if source is not None:
            raise UsageError(f"'{name}' is built in and takes no --source; to convert a file written by "
                             f"`fqvae data synth`, prepare it as shapes3d.")
        plan = synthetic.store_plan(grid or "official", image_size=spec.image_size)
    else:
        if source is None:
            hint = f"; or run `fqvae data download {name}`" if spec.download else ""
            raise UsageError(f"preparing '{name}' needs --source PATH: the {spec.source}{hint}.")
        src = Path(source).expanduser()
        if not src.exists():
            raise NotFoundError(f"source {src} does not exist.")
        options = {"factor_sizes": factor_sizes} if factor_sizes is not None else {}
        plan = CONVERTERS[spec.converter](src, name=name, **options)
        plan.source.update(source_record or {})
    target = dataset_dir(name, root)
    if existing is None:
        existing = "replace" if force else "error"
        if not force and (target / META_FILE).is_file():
            current = PreparedDataset(target)
            if (source_identity(current.meta.get("source")) == source_identity(plan.source)
                    and current.space == plan.space and current.image_size == plan.image_size):
                return current, False
            src = current.meta.get("source") or {}
            what = src.get("name", "another source") + (f", {src['grid']} grid" if src.get("grid") else "")
            raise UsageError(f"dataset '{name}' is already prepared at {target} (from {what}); pass --force "
                             f"to replace it.")
    return write_store(name, plan, root, existing=existing)


def list_datasets(root: Path | str | None = None) -> list[dict[str, Any]]:
    """One row per known dataset name: whether it is prepared, its size when it is, and what
    `fqvae data download` would fetch (bytes, exact or approximate, and whether a hash is pinned)."""
    rows = []
    for name, spec in DATASETS.items():
        row: dict[str, Any] = {"name": name, "title": spec.title, "built_in": spec.built_in,
                               "prepared": False, "path": str(dataset_dir(name, root))}
        if spec.download is not None:
            dl, files = spec.download, spec.download_files  # every file counted (SmallNORB has six)
            row["download"] = {"url": dl.url, "bytes": sum(f.size or f.approx_bytes for f in files),
                               "exact": all(f.size is not None for f in files),
                               "hash_pinned": all(f.pinned for f in files),
                               "algorithm": dl.algorithm if dl.hash else None,
                               "via": "google drive" if dl.drive_id else "http"}
        if is_prepared(name, root):
            try:
                ds = PreparedDataset(dataset_dir(name, root))
                row.update(prepared=True, n_images=len(ds), image_size=ds.image_size,
                           factor_sizes=list(ds.space.sizes), disk_bytes=ds.disk_bytes())
            except (DataError, NotFoundError) as exc:
                row.update(error=str(exc))
        rows.append(row)
    return rows
