"""Factor spaces of full factorial datasets.

Every ground-truth dataset here is a complete grid of factor combinations stored in row-major (C)
order, so the LAST factor varies fastest: `index = ravel_multi_index(codes, sizes)`. Codes are the
integer positions of a factor's value in its sorted value list; values are what the source files
store (hues in [0, 1), degrees, ...). Values become codes by nearest match after a tolerant
`np.unique`, never by truncating `v * k` (float error would mislabel)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fqvae_cli.errors import DataError, UsageError

if TYPE_CHECKING:
    from fqvae_cli.console import Progress

# Two label values closer than this (relative to the column's range) are the same grid value.
VALUE_RTOL = 1e-6


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def unique_values(column: np.ndarray, rtol: float = VALUE_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of `column` and, for each entry, the index of its value.

    Like `np.unique(column, return_inverse=True)`, but values that differ only by float noise
    (closer than rtol times the column's range) are merged into one value (their mean)."""
    column = np.asarray(column, dtype=np.float64).reshape(-1)
    if column.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(column)):
        raise DataError("the labels contain NaN or infinite values.")
    u, inverse = np.unique(column, return_inverse=True)
    tol = rtol * max(1.0, float(u[-1] - u[0]))
    cluster = np.concatenate([[0], np.cumsum(np.diff(u) > tol)])
    counts = np.bincount(cluster)
    values = np.bincount(cluster, weights=u) / counts
    return values, cluster[inverse.reshape(-1)].astype(np.int64)


class FactorSpace:
    """Names, sizes and values of the factors of a full factorial grid (row-major order)."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int],
                 values: Sequence[Sequence[float]] | None = None):
        names = tuple(str(n) for n in names)
        sizes = tuple(int(s) for s in sizes)
        if len(names) != len(sizes):
            raise UsageError(f"{len(names)} factor names but {len(sizes)} factor sizes.")
        if not sizes:
            raise UsageError("a factor space needs at least one factor.")
        if any(s < 1 for s in sizes):
            raise UsageError(f"factor sizes must be positive, got {list(sizes)}.")
        if len(set(names)) != len(names):
            raise UsageError(f"factor names must be distinct, got {list(names)}.")
        if values is None:
            vals = tuple(np.arange(s, dtype=np.float64) for s in sizes)
        else:
            if len(values) != len(sizes):
                raise UsageError(f"{len(values)} value lists for {len(sizes)} factors.")
            vals = tuple(np.asarray(v, dtype=np.float64).reshape(-1) for v in values)
            for name, size, v in zip(names, sizes, vals, strict=True):
                if v.size != size:
                    raise UsageError(f"factor '{name}' has size {size} but {v.size} values.")
                if size > 1 and not np.all(np.diff(v) > 0):
                    raise UsageError(f"the values of factor '{name}' must be strictly increasing.")
        for v in vals:
            v.setflags(write=False)
        self.names = names
        self.sizes = sizes
        self.values = vals

    # ---- basic facts -------------------------------------------------------------------------
    @property
    def n_factors(self) -> int:
        return len(self.sizes)

    @property
    def size(self) -> int:
        """Number of factor combinations (= images in the dataset)."""
        return math.prod(self.sizes)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FactorSpace) and self.names == other.names and self.sizes == other.sizes
                and all(np.array_equal(a, b) for a, b in zip(self.values, other.values, strict=True)))

    def __hash__(self) -> int:
        return hash((self.names, self.sizes))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={s}" for n, s in zip(self.names, self.sizes, strict=True))
        return f"FactorSpace({inner})"

    # ---- index <-> codes -----------------------------------------------------------------------
    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim == 1:
            codes = codes[None, :]
        if codes.ndim != 2 or codes.shape[1] != self.n_factors:
            raise UsageError(f"codes must have shape (n, {self.n_factors}), got {codes.shape}.")
        if not np.issubdtype(codes.dtype, np.integer):
            raise UsageError(f"codes must be integers, got {codes.dtype}.")
        if codes.shape[0] and ((codes.min(axis=0) < 0).any()
                               or (codes.max(axis=0) >= np.asarray(self.sizes)).any()):
            raise UsageError(f"codes out of range for factor sizes {list(self.sizes)}.")
        return codes

    def ravel(self, codes: np.ndarray) -> np.ndarray:
        """Row-major dataset indices of codes (n, F) (or one code vector (F,)) -> int64 (n,)."""
        codes = self._check_codes(codes)
        return np.ravel_multi_index(tuple(codes.T), self.sizes).astype(np.int64)

    def unravel(self, index: np.ndarray | int) -> np.ndarray:
        """Codes (n, F) int64 of row-major dataset indices (n,) (or one index)."""
        index = np.atleast_1d(np.asarray(index))
        if not np.issubdtype(index.dtype, np.integer):
            raise UsageError(f"indices must be integers, got {index.dtype}.")
        if index.size and (index.min() < 0 or index.max() >= self.size):
            raise UsageError(f"indices out of range for a dataset of {self.size} images.")
        return np.stack(np.unravel_index(index.reshape(-1), self.sizes), axis=1).astype(np.int64)

    def all_codes(self) -> np.ndarray:
        """Codes of every combination in dataset order, (size, F) int64."""
        return self.unravel(np.arange(self.size, dtype=np.int64))

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """n factor combinations drawn uniformly (with replacement) from the whole grid: (n, F)."""
        if n < 0:
            raise UsageError(f"cannot sample {n} combinations.")
        rng = _rng(seed)
        # Uniform over the product grid == each factor uniform and independent.
        return np.stack([rng.integers(0, s, size=n) for s in self.sizes], axis=1).astype(np.int64)

    # ---- values <-> codes ----------------------------------------------------------------------
    def codes_to_values(self, codes: np.ndarray) -> np.ndarray:
        codes = self._check_codes(codes)
        return np.stack([self.values[j][codes[:, j]] for j in range(self.n_factors)], axis=1)

    def values_to_codes(self, values: np.ndarray, rtol: float = VALUE_RTOL) -> np.ndarray:
        """Codes (n, F) of factor values (n, F): the nearest grid value, which must lie within float
        noise (rtol times the factor's range); anything farther is refused, not rounded."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.shape[1] != self.n_factors:
            raise UsageError(f"values must have shape (n, {self.n_factors}), got {values.shape}.")
        codes = np.empty(values.shape, dtype=np.int64)
        for j, grid in enumerate(self.values):
            col = values[:, j]
            if grid.size == 1:
                nearest = np.zeros(col.shape, dtype=np.int64)
            else:
                pos = np.clip(np.searchsorted(grid, col), 1, grid.size - 1)
                nearest = np.where(np.abs(col - grid[pos - 1]) <= np.abs(col - grid[pos]), pos - 1, pos)
            tol = rtol * max(1.0, float(grid[-1] - grid[0]))
            bad = np.flatnonzero(~(np.abs(grid[nearest] - col) <= tol))
            if bad.size:
                raise DataError(f"row {int(bad[0])}: value {float(col[bad[0]]):.10g} of factor '{self.names[j]}' "
                                f"is not one of its grid values.")
            codes[:, j] = nearest
        return codes

    # ---- grids -------------------------------------------------------------------------------
    @classmethod
    def from_labels(cls, labels: np.ndarray, names: Sequence[str]) -> tuple[FactorSpace, np.ndarray]:
        """The grid spanned by a label table (N, F) of factor VALUES, and its codes (N, F)."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[1] != len(names):
            raise DataError(f"labels must have shape (N, {len(names)}), got {labels.shape}.")
        columns = [unique_values(labels[:, j]) for j in range(labels.shape[1])]
        space = cls(names, [v.size for v, _ in columns], [v for v, _ in columns])
        codes = np.stack([c for _, c in columns], axis=1) if labels.shape[0] else \
            np.zeros((0, len(names)), dtype=np.int64)
        return space, codes

    def first_out_of_order(self, codes: np.ndarray, start: int = 0) -> int | None:
        """Index (counting from `start`) of the first row of `codes` that is not the row-major
        combination its position implies, or None when every row is in place."""
        codes = np.asarray(codes)
        expected = self.unravel(np.arange(start, start + codes.shape[0], dtype=np.int64))
        wrong = np.flatnonzero((codes != expected).any(axis=1))
        return int(start + wrong[0]) if wrong.size else None

    def check_grid(self, codes: np.ndarray, what: str = "labels") -> None:
        """Refuse a code table that is not exactly this grid in row-major order."""
        codes = np.asarray(codes)
        if codes.shape[0] != self.size:
            raise DataError(f"the {what} have {codes.shape[0]:,} rows but the factor values span a grid of "
                            f"{'x'.join(map(str, self.sizes))} = {self.size:,} combinations, so they are "
                            f"not a complete grid.")
        row = self.first_out_of_order(codes)
        if row is not None:
            found = ", ".join(str(int(c)) for c in codes[row])
            want = ", ".join(str(int(c)) for c in self.unravel(row)[0])
            raise DataError(f"{what} row {row} is out of row-major order: it holds factor codes ({found}) "
                            f"where ({want}) belongs.")

    # ---- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"factor_names": list(self.names), "factor_sizes": list(self.sizes),
                "factor_values": [[float(x) for x in v] for v in self.values]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FactorSpace:
        return cls(d["factor_names"], d["factor_sizes"], d.get("factor_values"))

    def subgrid(self, keep: Sequence[Sequence[int]]) -> FactorSpace:
        """The space restricted to the value positions `keep[j]` of each factor (a reduced grid)."""
        if len(keep) != self.n_factors:
            raise UsageError(f"need {self.n_factors} index lists, got {len(keep)}.")
        return FactorSpace(self.names, [len(k) for k in keep],
                           [self.values[j][np.asarray(k, dtype=np.int64)] for j, k in enumerate(keep)])


# What a converter hands the store (fqvae_cli.data.store): a SourcePlan, checked before anything is
# written. Converters import this, never the store, so the store can import every converter.

@dataclass
class SourcePlan:
    """What a converter found in a source, checked before anything is written.

    `fill(images, progress)` streams every image, in dataset order, into the (N, S, S, 3) uint8
    array it is given and advances the progress handle by images written."""

    space: FactorSpace
    image_size: int
    fill: Callable[[np.ndarray, Progress], None]
    source: dict[str, Any]
    source_path: Path | None = None  # hashed into source.sha256 while preparing
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
