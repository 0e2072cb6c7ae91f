"""Per-pixel MSE: a hand-computed value, the scale shift, batch accumulation and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.reconstruction import REPORT_SCALE, mse_per_pixel, squared_error_sum


def test_mse_by_hand():
    # Differences 0.5, 0, 0.5, 0 -> squares 0.25, 0, 0.25, 0 -> mean 0.125.
    x = np.array([[0.0, 1.0], [0.5, 0.25]])
    x_hat = np.array([[0.5, 1.0], [0.0, 0.25]])
    assert mse_per_pixel(x, x_hat) == 0.125
    assert mse_per_pixel(x, x_hat) * REPORT_SCALE == 1250.0


def test_same_value_on_the_shifted_model_scale():
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 8, 8)).astype(np.float32)
    x_hat = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    on_unit = mse_per_pixel(x, x_hat)
    on_model = mse_per_pixel(x - 0.5, x_hat - 0.5)
    assert on_model == pytest.approx(on_unit, rel=1e-6)
    assert on_unit == pytest.approx(float(np.mean((x.astype(np.float64) - x_hat) ** 2)), rel=1e-12)


def test_accumulates_in_chunks_and_batches():
    # 2500 rows cross the internal chunk size; summing over two batches gives the same mean.
    rng = np.random.default_rng(1)
    x = rng.random((2500, 3))
    x_hat = rng.random((2500, 3))
    direct = float(np.mean((x - x_hat) ** 2))
    assert mse_per_pixel(x, x_hat) == pytest.approx(direct, rel=1e-12)
    s1, n1 = squared_error_sum(x[:1000], x_hat[:1000])
    s2, n2 = squared_error_sum(x[1000:], x_hat[1000:])
    assert n1 + n2 == x.size
    assert (s1 + s2) / (n1 + n2) == pytest.approx(direct, rel=1e-12)


def test_bad_inputs():
    with pytest.raises(DataError, match="shapes"):
        mse_per_pixel(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(DataError, match="NaN"):
        mse_per_pixel(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(DataError, match="no pixels"):
        mse_per_pixel(np.zeros((0, 3)), np.zeros((0, 3)))
