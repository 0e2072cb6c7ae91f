"""The reported MSE through its production path (metrics.codes.reconstruction_mse): hand-computed values
on uint8 images, batch accumulation, and the Table 1 scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fqvae_cli.metrics import MSE_SCALE
from fqvae_cli.metrics.codes import reconstruction_mse


class Images:
    """The part of a PreparedDataset reconstruction_mse reads."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def images_at(self, idx):
        return self.images[np.asarray(idx)]


class Grey(torch.nn.Module):
    """Reconstructs every pixel as mid-grey: model value 0, i.e. 0.5 on the [0, 1] scale."""

    def encode_z(self, x):
        return x

    def decode(self, z):
        return torch.zeros_like(z)


def test_mse_by_hand_on_the_unit_pixel_scale():
    # 2 images of 1x1 pixel, 3 channels: values 0, 255, 51 -> on [0, 1]: 0, 1, 0.2; against 0.5:
    # squared errors 0.25, 0.25, 0.09 (image 1) and 0.25 x 3 (image 2, all black) -> mean 1.34 / 6.
    images = np.array([[[[0, 255, 51]]], [[[0, 0, 0]]]], dtype=np.uint8)
    ds = Images(images)
    mse = reconstruction_mse(Grey(), ds, np.array([0, 1]), torch.device("cpu"))
    assert mse == pytest.approx(1.34 / 6, rel=1e-6)
    assert round(mse * MSE_SCALE) == 2233  # as Table 1 prints it, x 10^4
    # batches of one image give the same mean (a sum over pixels, divided once)
    assert reconstruction_mse(Grey(), ds, np.array([0, 1]), torch.device("cpu"), batch_size=1) == mse
    # one image alone
    assert reconstruction_mse(Grey(), ds, np.array([1]), torch.device("cpu")) == pytest.approx(0.25)


def test_a_perfect_reconstruction_has_zero_error_and_no_images_give_nan():
    class Copy(Grey):
        def decode(self, z):
            return z

    ds = Images(np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8))
    assert reconstruction_mse(Copy(), ds, np.arange(5), torch.device("cpu"), batch_size=2) == 0.0
    assert np.isnan(reconstruction_mse(Copy(), ds, np.array([], dtype=np.int64), torch.device("cpu")))
