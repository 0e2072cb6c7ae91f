"""Validation of the (codes, factors) arrays every metric takes.

Each check raises a DataError whose message is one sentence naming the array, so the CLI can show it
as is. `name` lets the caller say where an array came from (for example a file name)."""

from __future__ import annotations

import numpy as np

from fqvae_cli.errors import DataError

_NUMERIC_KINDS = "biuf"


def as_matrix(a: object, name: str) -> np.ndarray:
    """A non-empty 2-D numeric array (rows = samples, columns = latents or factors)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(f"{name} must hold numbers, but its dtype is {arr.dtype}.")
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (samples x columns), but it has shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape}).")
    return arr


# The DCI classifiers (scikit-learn's trees) work in float32: a code beyond its range becomes infinite there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_codes(a: object, name: str = "codes") -> np.ndarray:
    """A 2-D numeric array of finite values within float32's range."""
    arr = as_matrix(a, name)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{name} contains NaN or infinite values (the first at row {row}, column {col}).")
        huge = np.abs(arr) > FLOAT32_MAX
        if huge.any():
            row, col = np.argwhere(huge)[0]
            raise DataError(f"{name} holds {arr[row, col]:.3g} at row {row}, column {col}, beyond float32's range "
                            f"(±{FLOAT32_MAX:.3g}) in which the metrics are computed; rescale the codes.")
    return arr


def as_factors(a: object, name: str = "factors") -> np.ndarray:
    """Factor codes as int64: finite, integer-valued and non-negative (label indices, as datasets store them)."""
    arr = as_matrix(a, name)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{name} must hold integer factor codes, but row {row}, column {col} "
                            f"is {arr[row, col]!r}.")
    if (arr < 0).any():
        row, col = np.argwhere(arr < 0)[0]
        raise DataError(f"{name} must hold non-negative factor codes, but row {row}, column {col} "
                        f"is {arr[row, col]!r}.")
    return arr.astype(np.int64)


def require_varied(factors: np.ndarray, name: str = "factors") -> None:
    """Every factor column takes at least two values (a classifier and an entropy need two)."""
    for j in range(factors.shape[1]):
        col = factors[:, j]
        if (col == col[0]).all():
            raise DataError(f"factor {j} of {name} takes a single value ({col[0]}); "
                            "every factor needs at least two values.")


def require_same_rows(codes: np.ndarray, factors: np.ndarray,
                      codes_name: str = "codes", factors_name: str = "factors") -> None:
    if codes.shape[0] != factors.shape[0]:
        raise DataError(f"{codes_name} has {codes.shape[0]} rows but {factors_name} has "
                        f"{factors.shape[0]}; each row must pair one sample's codes with its factors.")


def train_test(codes_train: object, factors_train: object, codes_test: object, factors_test: object,
               metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(codes, factors) of a metric's training rows and of its test rows, each checked as above and
    against the other: (x_train, y_train, x_test, y_test)."""
    x_train = as_codes(codes_train, f"the {metric} training codes")
    x_test = as_codes(codes_test, f"the {metric} test codes")
    y_train = as_factors(factors_train, f"the {metric} training factors")
    y_test = as_factors(factors_test, f"the {metric} test factors")
    require_same_rows(x_train, y_train, f"the {metric} training codes", f"the {metric} training factors")
    require_same_rows(x_test, y_test, f"the {metric} test codes", f"the {metric} test factors")
    if x_train.shape[1] != x_test.shape[1] or y_train.shape[1] != y_test.shape[1]:
        raise DataError(f"the {metric} training and test arrays have different numbers of columns.")
    return x_train, y_train, x_test, y_test


def is_integer_valued(codes: np.ndarray) -> bool:
    """True for integer dtypes and for floats that are all whole numbers (codebook indices saved as float)."""
    if codes.dtype.kind in "biu":
        return True
    return bool(np.all(codes == np.round(codes)))
