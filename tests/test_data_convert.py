"""Converters on small files written in exactly the official layouts (reduced grids), and every
refusal: a clear DataError naming the problem, and nothing written."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
from PIL import Image
from writers import ISAAC_SIZES, SHAPES_SMALL, images_for, isaac_image, isaac_labels, write_isaac, write_shapes3d

from fqvae_cli import paths
from fqvae_cli.data.store import prepare
from fqvae_cli.errors import DataError, NotFoundError, UsageError


def nothing_written(name: str) -> bool:
    """No dataset folder and no partial one (the empty lock file of a builder may stay)."""
    root = paths.data_root()
    return not root.exists() or not [p for p in root.iterdir()
                                     if p.name.startswith((name, f".{name}.")) and p.name != f".{name}.lock"]


# ---- shapes3d -----------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_shapes3d_reduced_grid(tmp_path, compress):
    src = write_shapes3d(tmp_path / "3dshapes.h5", compress=compress)
    ds, written = prepare("shapes3d", src)
    assert written and len(ds) == 48 and ds.image_size == 4
    assert ds.space.sizes == (2, 2, 1, 2, 2, 3)
    np.testing.assert_allclose(ds.space.values[1], [0.3, 0.7])
    assert np.array_equal(np.asarray(ds.images), images_for(48))
    assert ds.codes[13].tolist() == [0, 1, 0, 0, 0, 1]  # 13 = ((0*2+1)*1+0)*12 + 0*6 + 0*3 + 1
    assert any("reduced grid (2,2,1,2,2,3)" in n for n in ds.meta["notes"])
    assert ds.meta["source"]["name"] == "3dshapes.h5"
    assert ds.meta["source"]["size"] == src.stat().st_size
    assert len(ds.meta["source"]["sha256"]) == 64


def test_shapes3d_swapped_rows_name_the_row(tmp_path):
    labels = SHAPES_SMALL.codes_to_values(SHAPES_SMALL.all_codes())
    labels[[17, 30]] = labels[[30, 17]]
    src = write_shapes3d(tmp_path / "3dshapes.h5", labels=labels)
    with pytest.raises(DataError, match=r"label row 17 is out of row-major order"):
        prepare("shapes3d", src)
    assert nothing_written("shapes3d")


@pytest.mark.parametrize("kwargs, message", [
    ({"drop": "labels"}, r"3dshapes.h5 has no 'labels' dataset"),
    ({"drop": "images"}, r"has no 'images' dataset"),
    ({"image_dtype": np.float32}, r"'images' are float32, expected uint8"),
    ({"images": images_for(48)[..., 0]}, r"'images' have shape \(48, 4, 4\), expected \(N, H, H, 3\)"),
    ({"images": images_for(48)[:, :, :3]}, r"'images' have shape \(48, 4, 3, 3\)"),
    ({"labels": np.zeros((48, 6), dtype=np.int64)}, r"'labels' are int64, expected float64"),
    ({"labels": np.zeros((48, 5))}, r"'labels' have shape \(48, 5\), expected \(N, 6\)"),
    ({"images": images_for(47), "labels": SHAPES_SMALL.codes_to_values(SHAPES_SMALL.all_codes())[:47]},
     r"47 rows but the factor values span a grid of 2x2x1x2x2x3 = 48"),
    ({"images": images_for(40)}, r"40 images but 48 label rows"),
])
def test_shapes3d_refusals(tmp_path, kwargs, message):
    src = write_shapes3d(tmp_path / "3dshapes.h5", **kwargs)
    with pytest.raises(DataError, match=message):
        prepare("shapes3d", src)
    assert nothing_written("shapes3d")


def test_shapes3d_not_hdf5_and_missing_source(tmp_path):
    bad = tmp_path / "3dshapes.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="is not a readable HDF5 file"):
        prepare("shapes3d", bad)
    with pytest.raises(NotFoundError, match="does not exist"):
        prepare("shapes3d", tmp_path / "missing.h5")
    with pytest.raises(UsageError, match="needs --source PATH"):
        prepare("shapes3d")
    assert nothing_written("shapes3d")


# ---- mpi3d --------------------------------------------------------------------------------------

def test_mpi3d_custom_layout_deflated_npz(tmp_path):
    sizes = [2, 2, 1, 1, 3, 2, 2]
    n = math.prod(sizes)
    src = tmp_path / "mpi3d_small.npz"
    np.savez_compressed(src, images=images_for(n, 8))
    ds, _ = prepare("mpi3d", src, factor_sizes=sizes)
    assert ds.space.sizes == tuple(sizes) and ds.meta["variant"] == "custom"
    assert np.array_equal(np.asarray(ds.images), images_for(n, 8))
    assert ds.codes[-1].tolist() == [1, 1, 0, 0, 2, 1, 1]


def test_mpi3d_variant_follows_the_number_of_images(tmp_path):
    # Official N with 1x1 images: the layout logic is exercised without gigabytes.
    complex_src = tmp_path / "real3d_complicated_shapes_ordered.npz"
    np.savez(complex_src, images=images_for(460_800, 1))
    ds, _ = prepare("mpi3d", complex_src)
    assert ds.space.sizes == (4, 4, 2, 3, 3, 40, 40) and ds.meta["variant"] == "complex"
    assert ds.codes[460_799].tolist() == [3, 3, 1, 2, 2, 39, 39]
    assert ds.codes[1600].tolist() == [0, 0, 0, 0, 1, 0, 0]
    with pytest.raises(DataError, match=r"the MPI3D complex layout \(4,4,2,3,3,40,40\), not the layout of "
                                        r"'mpi3d_toy' .*prepare it as mpi3d\."):
        prepare("mpi3d_toy", complex_src)

    toy = tmp_path / "mpi3d_toy.npz"
    np.savez(toy, images=images_for(1_036_800, 1))
    with pytest.raises(DataError, match=r"1,036,800 images, the MPI3D toy/realistic/real layout "
                                        r"\(6,6,2,3,3,40,40\), not the layout of 'mpi3d' \(4,4,2,3,3,40,40\); "
                                        r"prepare it as mpi3d_toy or mpi3d_realistic or mpi3d_real"):
        prepare("mpi3d", toy)
    ds, _ = prepare("mpi3d_toy", toy)
    assert ds.space.sizes == (6, 6, 2, 3, 3, 40, 40)
    assert ds.codes[1_036_799].tolist() == [5, 5, 1, 2, 2, 39, 39]


def test_mpi3d_refusals(tmp_path):
    odd = tmp_path / "odd.npz"
    np.savez(odd, images=images_for(10, 2))
    with pytest.raises(DataError, match=r"holds 10 images, which matches neither MPI3D-complex \(460,800\) "
                                        r"nor MPI3D toy/realistic/real \(1,036,800\); pass --factor-sizes"):
        prepare("mpi3d", odd)
    with pytest.raises(DataError, match=r"--factor-sizes 2,2,1,1,1,1,3 give 12 combinations but the file "
                                        r"holds 10 images"):
        prepare("mpi3d", odd, factor_sizes=[2, 2, 1, 1, 1, 1, 3])
    with pytest.raises(UsageError, match="needs 7 positive sizes"):
        prepare("mpi3d", odd, factor_sizes=[10])
    no_key = tmp_path / "nokey.npz"
    np.savez(no_key, imgs=images_for(10, 2))
    with pytest.raises(DataError, match=r"has no 'images' array \(found: imgs\)"):
        prepare("mpi3d", no_key)
    floats = tmp_path / "floats.npz"
    np.savez(floats, images=images_for(10, 2).astype(np.float32))
    with pytest.raises(DataError, match="'images' are float32, expected uint8"):
        prepare("mpi3d", floats, factor_sizes=[10, 1, 1, 1, 1, 1, 1])
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="not an .npz/.npy array file"):
        prepare("mpi3d", junk)
    with pytest.raises(UsageError, match="--factor-sizes applies to the mpi3d datasets only"):
        prepare("shapes3d", junk, factor_sizes=[1])
    assert nothing_written("mpi3d")


# ---- isaac3d ------------------------------------------------------------------------------------

def test_isaac3d_folder_and_zip(tmp_path):
    folder = write_isaac(tmp_path / "Isaac3D_down128")
    ds, _ = prepare("isaac3d", tmp_path)  # the parent folder works too
    assert ds.space.sizes == ISAAC_SIZES and ds.image_size == 64 and len(ds) == 8
    assert ds.codes[5].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1]
    expect = np.asarray(Image.fromarray(isaac_image(5)).resize((64, 64), Image.Resampling.BICUBIC))
    assert np.array_equal(ds.images[5], expect)
    assert ds.images[5, 10, 5].tolist() == [50, 200, 30] and ds.images[5, 10, 60].tolist() == [245, 40, 100]
    assert ds.meta["source"]["hashed"] == "labels.npy"

    archive = tmp_path / "Isaac3D_down128.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tmp_path).as_posix())
    from_zip, _ = prepare("isaac3d", archive, force=True)
    assert np.array_equal(np.asarray(from_zip.images), np.asarray(ds.images))
    assert from_zip.meta["source"]["format"] == "zip"


def test_isaac3d_refusals(tmp_path):
    labels = isaac_labels()
    labels[[1, 2]] = labels[[2, 1]]
    with pytest.raises(DataError, match="label row 1 is out of row-major order"):
        prepare("isaac3d", write_isaac(tmp_path / "swapped", labels=labels))
    with pytest.raises(DataError, match=r"image images/000007.png is missing"):
        prepare("isaac3d", write_isaac(tmp_path / "truncated", missing=7))
    with pytest.raises(DataError, match=r"image images/000000.png is 32x32, expected a square of at least 64x64"):
        prepare("isaac3d", write_isaac(tmp_path / "tiny", size=32))
    with pytest.raises(DataError, match=r"labels.npy has shape \(8, 3\), expected \(N, 9\)"):
        prepare("isaac3d", write_isaac(tmp_path / "narrow", labels=isaac_labels()[:, :3]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no labels.npy"):
        prepare("isaac3d", tmp_path / "empty")
    assert nothing_written("isaac3d")


def test_isaac3d_missing_image_mid_conversion_leaves_nothing(tmp_path):
    # The first and last images exist, so the check before writing passes; image 3 fails while
    # streaming, inside the temporary folder, which is then removed.
    with pytest.raises(DataError, match=r"image images/000003.png is missing"):
        prepare("isaac3d", write_isaac(tmp_path / "hole", missing=3))
    assert nothing_written("isaac3d")
