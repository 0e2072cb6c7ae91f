"""Converters of the field's datasets (dSprites and its three variants, Cars3D, Falcor3D) on small files
written in exactly their official layouts: the factor order, the value-to-index mapping and the image
orientation checked pixel for pixel against index-encoded images; every refusal one DataError, nothing
written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from writers import (
    DSPRITES_SMALL,
    FALCOR_SIZES,
    cars_quadrants,
    dsprites_mask,
    falcor_labels,
    isaac_image,
    write_cars3d,
    write_dsprites,
    write_falcor,
    zip_folder,
)

from fqvae_cli import paths
from fqvae_cli.data.dsprites import variant_image
from fqvae_cli.data.store import prepare
from fqvae_cli.errors import DataError


def nothing_written(name: str) -> bool:
    root = paths.data_root()
    return not root.exists() or not [p for p in root.iterdir()
                                     if p.name.startswith((name, f".{name}.")) and p.name != f".{name}.lock"]


# ---- dSprites -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_dsprites_factor_order_values_and_pixels(tmp_path, fmt):
    src = write_dsprites(tmp_path / f"dsprites_ndarray_co1sh3sc6or40x32y32_64x64.{fmt}", fmt=fmt)
    ds, _ = prepare("dsprites", src)
    assert ds.space.names == ("shape", "scale", "orientation", "position_x", "position_y")
    assert ds.space.sizes == (3, 2, 2, 2, 2) and ds.image_size == 64 and len(ds) == 48
    np.testing.assert_allclose(ds.space.values[2], [0.0, np.pi])
    # 37 = shape 2, scale 0, orientation 1, x 0, y 1: 2*16 + 0*8 + 1*4 + 0*2 + 1
    assert ds.codes[37].tolist() == [2, 0, 1, 0, 1]
    for i in (0, 5, 37, 47):
        expect = np.repeat(dsprites_mask(i)[..., None] * 255, 3, axis=2)
        assert np.array_equal(ds.images[i], expect), i
    assert ds.images[37, 0, :8, 0].tolist() == [255, 0, 255, 0, 0, 255, 0, 0]  # 37 = 0b100101, bit 0 first
    assert ds.images[37, 63, 0].tolist() == [255, 255, 255] and ds.images[37, 0, 63].tolist() == [0, 0, 0]
    assert any("reduced grid (3,2,2,2,2)" in n for n in ds.meta["notes"])
    assert ds.meta["channels"] == "grayscale in three equal channels"


def test_dsprites_refusals(tmp_path):
    n = DSPRITES_SMALL.size
    codes = DSPRITES_SMALL.all_codes()
    wrong = np.concatenate([np.zeros((n, 1), np.int64), codes], axis=1)
    wrong[[3, 4]] = wrong[[4, 3]]  # classes that disagree with the values
    with pytest.raises(DataError, match=r"row 3 has classes \[0, 0, 1, 0, 0\] but its values .* are the sorted "
                                        r"positions \[0, 0, 0, 1, 1\]"):
        prepare("dsprites", write_dsprites(tmp_path / "a.hdf5", classes=wrong))
    colours = np.arange(n, dtype=np.float64)[:, None]
    bad_colour = np.concatenate([np.arange(n)[:, None] % 2, codes], axis=1)
    with pytest.raises(DataError, match="the colour latent takes several values"):
        prepare("dsprites", write_dsprites(tmp_path / "b.hdf5", classes=bad_colour, colour_values=colours))
    np.savez(tmp_path / "c.npz", imgs=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"c.npz has no 'latents_classes', 'latents_values'"):
        prepare("dsprites", tmp_path / "c.npz")
    assert nothing_written("dsprites")


@pytest.mark.parametrize("name", ["color_dsprites", "noisy_dsprites"])
def test_dsprites_variants_are_a_function_of_index_and_seed(tmp_path, name):
    src = write_dsprites(tmp_path / "dsprites.hdf5")
    ds, _ = prepare(name, src)
    assert ds.space.sizes == (3, 2, 2, 2, 2) and ds.meta["variant"]["seed"] == 0
    for i in (0, 37):
        mask = dsprites_mask(i).astype(bool)
        rng = np.random.default_rng([0, i])
        if name == "color_dsprites":
            colour = np.rint(rng.uniform(0.5, 1.0, size=3) * 255).astype(np.uint8)
            assert (ds.images[i][mask] == colour).all() and (ds.images[i][~mask] == 0).all()
            assert (colour >= 128).all()
        else:
            noise = np.rint(rng.uniform(0.0, 1.0, size=(64, 64, 3)) * 255).astype(np.uint8)
            assert (ds.images[i][mask] == 255).all() and np.array_equal(ds.images[i][~mask], noise[~mask])
    again, _ = prepare(name, src, force=True)  # the same on every prepare
    assert np.array_equal(np.asarray(again.images), np.asarray(ds.images))


def test_scream_dsprites_needs_and_uses_the_scream(tmp_path):
    src = write_dsprites(tmp_path / "dsprites.hdf5")
    with pytest.raises(DataError, match="scream_dsprites needs scream.jpg beside dsprites.hdf5"):
        prepare("scream_dsprites", src)
    picture = np.random.default_rng(5).integers(0, 256, size=(90, 100, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "scream.jpg", format="PNG")  # lossless, so pixels are known
    ds, _ = prepare("scream_dsprites", src)
    scream = picture / 255.0  # 100x90 fits 350x274: thumbnail leaves it as is
    i = 37
    rng = np.random.default_rng([0, i])
    x, y = int(rng.integers(0, 90 - 64)), int(rng.integers(0, 100 - 64))
    background = (scream[x:x + 64, y:y + 64] + rng.uniform(0, 1, size=3)) / 2
    mask = dsprites_mask(i).astype(bool)
    background[mask] = 1 - background[mask]
    assert np.array_equal(ds.images[i], np.rint(background * 255).astype(np.uint8))
    assert np.array_equal(ds.images[i], variant_image("scream_dsprites", dsprites_mask(i), i, scream))
    assert len(ds.meta["variant"]["scream"]["sha256"]) == 64


# ---- Cars3D ---------------------------------------------------------------------------------------------

def test_cars3d_tar_order_mapping_and_orientation(tmp_path):
    src = write_cars3d(tmp_path / "nips2015-analogy-data.tar.gz")
    ds, _ = prepare("cars3d", src)
    assert ds.space.names == ("elevation", "azimuth", "object") and ds.space.sizes == (2, 3, 3)
    assert ds.image_size == 64 and len(ds) == 18
    assert ds.meta["source"]["objects"] == "list.txt order"
    for e in range(2):
        for a in range(3):
            for o in range(3):
                i = (e * 3 + a) * 3 + o
                assert ds.codes[i].tolist() == [e, a, o]
                img = ds.images[i]
                assert img[10, 10].tolist() == [10 * e + 5, 10 * a + 7, 20 * o + 9], (e, a, o)
                assert img[10, 54].tolist() == [200, 0, 0] and img[54, 10].tolist() == [0, 200, 0]
                assert img[54, 54].tolist() == [0, 0, 200]
    # the resampling is PIL's Lanczos, once
    expect = np.asarray(Image.fromarray(cars_quadrants(1, 2, 0)).resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.images[(1 * 3 + 2) * 3 + 0], expect)


def test_cars3d_folder_and_refusals(tmp_path):
    import tarfile

    src = write_cars3d(tmp_path / "cars.tar.gz")
    with tarfile.open(src) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    ds, _ = prepare("cars3d", tmp_path / "x")
    assert ds.space.sizes == (2, 3, 3) and ds.meta["source"]["format"] == "folder"
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="bad.tar.gz is not a readable tar archive"):
        prepare("cars3d", bad, force=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no car_\\*_mesh.mat files"):
        prepare("cars3d", tmp_path / "empty", force=True)


# ---- Falcor3D -------------------------------------------------------------------------------------------

def test_falcor3d_zip_labels_and_pixels(tmp_path):
    folder = write_falcor(tmp_path / "Falcor3D_down128")
    ds, _ = prepare("falcor3d", zip_folder(folder, tmp_path / "Falcor3D_down128.zip"))
    assert ds.space.names[0] == "lighting_intensity" and ds.space.names[-1] == "camera_z"
    assert ds.space.sizes == FALCOR_SIZES and len(ds) == 8 and ds.image_size == 64
    np.testing.assert_allclose(ds.space.values[0], [-1.0, 1.0])
    assert ds.codes[5].tolist() == [1, 0, 0, 0, 0, 0, 1]  # 5 = 1*4 + 0*2 + 1
    expect = np.asarray(Image.fromarray(isaac_image(5)).resize((64, 64), Image.Resampling.BICUBIC))
    assert np.array_equal(ds.images[5], expect)
    assert ds.images[5, 10, 5].tolist() == [50, 200, 30] and ds.images[5, 10, 60].tolist() == [245, 40, 100]


def test_falcor3d_refusals(tmp_path):
    labels = falcor_labels()
    labels[[1, 2]] = labels[[2, 1]]
    with pytest.raises(DataError, match="label row 1 is out of row-major order"):
        prepare("falcor3d", write_falcor(tmp_path / "swapped", labels=labels))
    with pytest.raises(DataError, match=r"train-rec.labels has shape \(8, 3\), expected \(N, 7\)"):
        prepare("falcor3d", write_falcor(tmp_path / "narrow", labels=falcor_labels()[:, :3]))
    assert nothing_written("falcor3d")


# ---- SmallNORB ------------------------------------------------------------------------------------------

def test_smallnorb_both_files_instance_a_nuisance(tmp_path):
    import itertools

    from writers import write_smallnorb

    folder = write_smallnorb(tmp_path / "norb")
    ds, _ = prepare("smallnorb", folder)
    assert ds.space.names == ("category", "instance", "elevation", "azimuth", "lighting")
    assert ds.space.sizes == (2, 4, 2, 2, 1) and len(ds) == 32 and ds.image_size == 64
    np.testing.assert_allclose(ds.space.values[1], [0, 1, 4, 6])  # testing's 0, 1 and training's 4, 6
    np.testing.assert_allclose(ds.space.values[3], [0, 34])
    assert ds.meta["nuisance_factors"] == ["instance"] and ds.meta["convention"] == "disentanglement_lib"
    for c, i, e, a in itertools.product(range(2), range(4), range(2), range(2)):
        idx = ((c * 4 + i) * 2 + e) * 2 + a
        assert ds.codes[idx].tolist() == [c, i, e, a, 0]
        img = ds.images[idx]
        assert img[10, 10].tolist() == [3 + 64 * c + 16 * i + 4 * e + 2 * a] * 3, (c, i, e, a)
        assert img[10, 54, 0] == 200 and img[54, 10, 0] == 100 and img[54, 54, 0] == 0  # camera 0, upright


def test_smallnorb_disent_is_the_training_file_only(tmp_path):
    from writers import norb_quadrants, write_smallnorb

    folder = write_smallnorb(tmp_path / "norb", parts=("training",), gz=False)
    ds, _ = prepare("smallnorb_disent", folder / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat")
    assert ds.space.sizes == (2, 2, 2, 2, 1) and ds.meta["nuisance_factors"] == []
    np.testing.assert_allclose(ds.space.values[1], [4, 6])
    expect = np.asarray(Image.fromarray(norb_quadrants(1, 1, 0, 1, 0)).resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.images[((1 * 2 + 1) * 2 + 0) * 2 + 1][..., 0], expect)


def test_smallnorb_refusals(tmp_path):
    from writers import write_smallnorb

    with pytest.raises(DataError, match=r"smallnorb needs smallnorb-\*-testing-dat.mat\(.gz\)"):
        prepare("smallnorb", write_smallnorb(tmp_path / "a", parts=("training",)))
    with pytest.raises(DataError, match=r"the labels do not cover the 2x4x2x2x1 grid once each: combination "):
        prepare("smallnorb", write_smallnorb(tmp_path / "b", drop_row=True))
    bad = write_smallnorb(tmp_path / "c")
    (bad / "smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat.gz").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(DataError, match="training-cat.mat.gz cannot be read"):
        prepare("smallnorb", bad)
    assert nothing_written("smallnorb")


def test_smallnorb_nuisance_draws_images_over_the_instances(tmp_path):
    from writers import write_smallnorb

    from fqvae_cli.data.nuisance import images_for_factors, latent_codes, latent_space

    ds, _ = prepare("smallnorb", write_smallnorb(tmp_path / "norb"))
    space = latent_space(ds)
    assert space.names == ("category", "elevation", "azimuth", "lighting") and space.sizes == (2, 2, 2, 1)
    factors = np.tile([[1, 0, 1, 0]], (4000, 1))
    idx = images_for_factors(ds, factors, seed=7)
    assert np.array_equal(latent_codes(ds, idx), factors)  # every image shows the factors asked
    counts = np.bincount(ds.codes[idx][:, 1], minlength=4)  # the instance, drawn uniformly
    assert counts.sum() == 4000 and counts.min() > 900 and counts.max() < 1100
    assert np.array_equal(idx, images_for_factors(ds, factors, seed=7))  # seeded
    # the images drawn are exactly the four of category 1, elevation 0, azimuth 1 (one per instance):
    assert sorted(set(idx.tolist())) == [((1 * 4 + i) * 2 + 0) * 2 + 1 for i in range(4)]


def test_metric_protocols_fit_or_refuse_on_the_small_datasets(tmp_path):
    """The paper protocol draws 15,000 distinct images: Cars3D's 17,568 hold them; a dataset with fewer
    images than a protocol asks is refused, never filled with duplicated rows."""
    import math

    from fqvae_cli.data.catalog import DATASETS
    from fqvae_cli.errors import UsageError
    from fqvae_cli.metrics import protocol_rows
    from fqvae_cli.metrics.codes import sample_indices
    from fqvae_cli.runs.evaluation import protocol_sizes

    assert protocol_rows(protocol_sizes("paper")) == 15_000 <= math.prod(DATASETS["cars3d"].factor_sizes) == 17_568
    ds, _ = prepare("cars3d", write_cars3d(tmp_path / "c.tar.gz"))
    assert sorted(sample_indices(ds, 18, 0).tolist()) == list(range(18))
    with pytest.raises(UsageError, match="needs 19 distinct images but the dataset has only 18"):
        sample_indices(ds, 19, 0)
