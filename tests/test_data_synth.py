"""The procedural Shapes3D: value grids, colour arithmetic, determinism, the 3dshapes.h5 layout."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from fqvae_cli.data import synthetic
from fqvae_cli.data.store import open_dataset, prepare
from fqvae_cli.errors import UsageError


@pytest.fixture(scope="module")
def small_render():
    space = synthetic.synth_space("small")
    blocks = list(synthetic.render_chunks(space, 32, workers=2))
    return space, blocks


def test_official_value_grids_are_shapes3d():
    space = synthetic.synth_space("official")
    assert space.names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert space.sizes == (10, 10, 10, 8, 4, 15) and space.size == 480_000
    assert space.values[0].tolist() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    np.testing.assert_allclose(space.values[3], np.linspace(0.75, 1.25, 8))
    assert space.values[4].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert space.values[5][[0, 7, 14]].tolist() == [-30.0, 0.0, 30.0]
    small = synthetic.synth_space("small")
    assert small.sizes == (3, 3, 3, 2, 4, 3) and small.size == 648
    with pytest.raises(UsageError, match="unknown grid 'huge'"):
        synthetic.synth_space("huge")


def test_hue_colours():
    # Saturation 0.88, value 1: the weakest channel sits at 1 - 0.88 = 0.12.
    rgb = synthetic.hue_rgb(np.array([0.0, 1 / 3, 2 / 3, 0.5, 1 / 6]))
    np.testing.assert_allclose(rgb, [[1, 0.12, 0.12], [0.12, 1, 0.12], [0.12, 0.12, 1],
                                     [0.12, 1, 1], [1, 1, 0.12]], atol=1e-12)


def test_weights_partition_each_pixel():
    w = synthetic.geometry_weights(1.0, 2, [0.0, 30.0], 32)
    assert w.shape == (2, 1024, 4)
    assert w.min() >= 0 and w.sum(axis=2).max() <= 1 + 1e-9
    # The top-left pixel sees a wall, the bottom row the floor, the centre the sphere.
    img = w[0].reshape(32, 32, 4)
    assert img[0, 0, 1] > 0 and img[0, 0, [0, 2]].sum() == 0
    assert img[31, :, 0].min() > 0 and img[31, :, [1, 2]].sum() == 0
    assert img[14, 16, 2] > 0.5 and img[24, 16, 2] == 0
    # Turning the camera changes the picture even for a sphere (the room turns).
    assert np.abs(w[0] - w[1]).max() > 0.1


def test_images_are_the_weighted_sum_of_region_colours():
    space = synthetic.synth_space("official")
    codes = np.array([[3, 7, 5, 2, 0, 4]])
    img = synthetic.render(space, 32, space.ravel(codes))[0].astype(np.float64)
    w = synthetic.geometry_weights(space.values[3][2], 0, space.values[5][4:5], 32)[0].astype(np.float32)
    colours = synthetic.hue_rgb(np.array([0.3, 0.7, 0.5]))
    expected = (w[:, :3].astype(np.float64) @ colours + w[:, 3:4]) * 255
    assert np.abs(img.reshape(-1, 3) - expected).max() <= 0.51


def test_hue_changes_only_recolour_their_region():
    space = synthetic.synth_space("official")
    a, b = synthetic.render(space, 32, space.ravel(np.array([[0, 0, 0, 4, 1, 7], [0, 0, 6, 4, 1, 7]])))
    changed = np.any(a != b, axis=-1)
    obj = synthetic.geometry_weights(space.values[3][4], 1, [0.0], 32)[0, :, 2].reshape(32, 32) > 0
    assert changed.any()
    assert not (changed & ~obj).any()  # only pixels the object covers


def test_render_is_deterministic_and_matches_the_full_render(small_render):
    space, blocks = small_render
    full = np.concatenate([b for _, b in blocks])
    assert [s for s, _ in blocks] == [k * 3 * 24 for k in range(9)]
    assert full.shape == (648, 32, 32, 3) and full.dtype == np.uint8
    again = np.concatenate([b for _, b in synthetic.render_chunks(space, 32, workers=1)])
    assert hashlib.sha256(full.tobytes()).hexdigest() == hashlib.sha256(again.tobytes()).hexdigest()
    picks = np.array([0, 1, 95, 300, 647])
    assert np.array_equal(synthetic.render(space, 32, picks), full[picks])
    # Distinct factor combinations give distinct images.
    assert len({hashlib.sha1(x.tobytes()).hexdigest() for x in full}) == 648


def test_write_h5_has_the_3dshapes_layout_and_same_bytes(tmp_path, small_render):
    space, blocks = small_render
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    synthetic.write_h5(a, image_size=32, grid="small")
    synthetic.write_h5(b, image_size=32, grid="small")
    assert a.read_bytes() == b.read_bytes()
    with h5py.File(a, "r") as fh:
        assert sorted(fh.keys()) == ["images", "labels"]
        assert fh["images"].dtype == np.uint8 and fh["images"].shape == (648, 32, 32, 3)
        assert fh["labels"].dtype == np.float64 and fh["labels"].shape == (648, 6)
        labels = fh["labels"][...]
        assert labels[0].tolist() == [0.0, 0.1, 0.2, 0.75, 0.0, -30.0]
        assert labels[1].tolist() == [0.0, 0.1, 0.2, 0.75, 0.0, 0.0]
        assert labels[-1].tolist() == [0.6, 0.8, 0.9, 1.25, 3.0, 30.0]
        assert np.array_equal(fh["images"][...], np.concatenate([b for _, b in blocks]))


def test_synth3d_store_equals_the_h5_prepared_as_shapes3d(tmp_path, small_render):
    _, blocks = small_render
    ds, written = prepare("synth3d", grid="small")
    assert written and ds.meta["source"]["grid"] == "small"
    assert np.array_equal(np.asarray(ds.images), np.concatenate([b for _, b in blocks]))
    h5 = tmp_path / "s.h5"
    synthetic.write_h5(h5, image_size=32, grid="small", compress=True)
    via_h5, _ = prepare("shapes3d", h5)
    assert np.array_equal(np.asarray(via_h5.images), np.asarray(ds.images))
    assert np.array_equal(via_h5.codes, ds.codes)
    assert via_h5.space == ds.space
    assert open_dataset("synth3d").meta["source"]["renderer_version"] == synthetic.RENDERER_VERSION


def test_bad_image_size_is_refused():
    with pytest.raises(UsageError, match="image size must be one of 32, 64"):
        next(synthetic.render_chunks(synthetic.synth_space("small"), 48))
