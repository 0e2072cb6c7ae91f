"""Small files in exactly the official layouts (reduced grids): 3dshapes.h5, MPI3D .npz and the
Isaac3D_down128 folder. Shared by the converter tests and the download tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from fqvae_cli.data.catalog import ISAAC3D_FACTORS
from fqvae_cli.data.factors import FactorSpace

# A reduced Shapes3D grid with the official value lists' layout: hues, scale, shape, orientation.
SHAPES_SMALL = FactorSpace(
    ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"], [2, 2, 1, 2, 2, 3],
    [[0.0, 0.1], [0.3, 0.1 * 7], [0.5], [0.75, 1.25], [0.0, 3.0], [-30.0, 0.0, 30.0]])


def images_for(n: int, size: int = 4) -> np.ndarray:
    """Image i is filled with a pattern that encodes i, so order mistakes show."""
    i = np.arange(n, dtype=np.int64)
    base = np.stack([i % 251, (i // 251) % 251, (i * 7) % 253], axis=1).astype(np.uint8)
    img = np.broadcast_to(base[:, None, None, :], (n, size, size, 3)).copy()
    img[:, 0, 0, :] = 255 - img[:, 0, 0, :]
    return img


def write_shapes3d(path, images=None, labels=None, *, compress=False, drop=None, image_dtype=None):
    space = SHAPES_SMALL
    labels = space.codes_to_values(space.all_codes()) if labels is None else labels
    images = images_for(space.size) if images is None else images
    with h5py.File(path, "w") as fh:
        opts = {"chunks": (5, *images.shape[1:]), "compression": "gzip"} if compress else {}
        if drop != "images":
            fh.create_dataset("images", data=images.astype(image_dtype or images.dtype), **opts)
        if drop != "labels":
            fh.create_dataset("labels", data=labels)
    return path


ISAAC_SIZES = (2, 1, 1, 1, 1, 2, 1, 1, 2)


def isaac_labels(sizes=ISAAC_SIZES) -> np.ndarray:
    values = [np.linspace(0, 1, s) if s > 1 else [0.5] for s in sizes]
    space = FactorSpace(ISAAC3D_FACTORS, sizes, values)
    return space.codes_to_values(space.all_codes())


def isaac_image(i: int, size: int = 128) -> np.ndarray:
    """Left half one colour, right half another, per image; bicubic keeps halves flat far from the edge."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[:, : size // 2] = (10 * i % 256, 200, 30)
    img[:, size // 2:] = (250 - i, 40, 20 * i % 256)
    return img


def write_isaac(folder, *, labels=None, missing=None, size=128):
    labels = isaac_labels() if labels is None else labels
    (folder / "images").mkdir(parents=True)
    np.save(folder / "labels.npy", labels)
    for i in range(labels.shape[0]):
        if i != missing:
            Image.fromarray(isaac_image(i, size)).save(folder / "images" / f"{i:06d}.png")
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    """A zip of `folder` with the folder itself at the top, as the official Isaac3D_down128 zip."""
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return archive


# ---- the field's datasets: dSprites, Cars3D, Falcor3D --------------------------------------------------

DSPRITES_SMALL = FactorSpace(  # shape, scale, orientation, x, y with the official value layout
    ["shape", "scale", "orientation", "position_x", "position_y"], [3, 2, 2, 2, 2],
    [[1.0, 2.0, 3.0], [0.5, 1.0], [0.0, np.pi], [0.0, 1.0], [0.0, 1.0]])


def dsprites_mask(i: int, size: int = 64) -> np.ndarray:
    """A 0/1 mask encoding index i in binary along the top row, with one marker pixel at the bottom left:
    an order mistake changes the bits, a transpose or a flip moves the marker."""
    mask = np.zeros((size, size), dtype=np.uint8)
    for bit in range(8):
        mask[0, bit] = (i >> bit) & 1
    mask[size - 1, 0] = 1
    mask[20:30, 20:40] = 1  # a sprite-sized block, for the variants' colours
    return mask


def write_dsprites(path: Path, *, fmt: str = "hdf5", size: int = 64, classes=None, colour_values=None) -> Path:
    """A reduced dSprites grid in the official layout: .hdf5 (imgs, latents/classes, latents/values) or
    .npz (imgs, latents_classes, latents_values)."""
    space = DSPRITES_SMALL
    codes = space.all_codes()
    n = space.size
    cls = np.concatenate([np.zeros((n, 1), np.int64), codes], axis=1) if classes is None else classes
    values = np.concatenate([np.ones((n, 1)) if colour_values is None else colour_values,
                             space.codes_to_values(codes)], axis=1)
    imgs = np.stack([dsprites_mask(i, size) for i in range(n)])
    if fmt == "hdf5":
        with h5py.File(path, "w") as fh:
            fh.create_dataset("imgs", data=imgs)
            fh.create_dataset("latents/classes", data=cls)
            fh.create_dataset("latents/values", data=values)
    else:
        np.savez(path, imgs=imgs, latents_classes=cls, latents_values=values)
    return path


def cars_quadrants(e: int, a: int, o: int, size: int = 128) -> np.ndarray:
    """A 128x128 car image: its top-left quadrant encodes (elevation, azimuth, object), the other three
    quadrants fixed colours, so the index mapping and the orientation both show after resizing."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    h = size // 2
    img[:h, :h] = (10 * e + 5, 10 * a + 7, 20 * o + 9)
    img[:h, h:] = (200, 0, 0)
    img[h:, :h] = (0, 200, 0)
    img[h:, h:] = (0, 0, 200)
    return img


def write_cars3d(path: Path, *, n_objects: int = 3, n_azimuth: int = 3, n_elevation: int = 2,
                 order=None) -> Path:
    """nips2015-analogy-data.tar.gz in the official layout (data/cars/list.txt, car_NNN_mesh.mat holding
    'im' (128, 128, 3, azimuths, elevations) and 'mask'), with list.txt in a non-sorted order."""
    import io
    import tarfile

    from scipy.io import savemat

    names = [f"car_{k + 1:03d}_mesh" for k in range(n_objects)]
    order = order or names[::-1]
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name in names:
            o = order.index(name)
            im = np.zeros((128, 128, 3, n_azimuth, n_elevation), dtype=np.uint8)
            for e in range(n_elevation):
                for a in range(n_azimuth):
                    im[:, :, :, a, e] = cars_quadrants(e, a, o)
            buf = io.BytesIO()
            savemat(buf, {"im": im, "mask": np.ones((128, 128, n_azimuth, n_elevation), np.uint8)})
            add(f"data/cars/{name}.mat", buf.getvalue())
        add("data/cars/list.txt", ("\n".join(order) + "\n").encode())
        add("data/shapes48.mat", b"not read")
    return path


FALCOR_SIZES = (2, 1, 1, 2, 1, 1, 2)


def falcor_labels(sizes=FALCOR_SIZES) -> np.ndarray:
    from fqvae_cli.data.catalog import FALCOR3D_FACTORS

    values = [np.linspace(-1, 1, s) if s > 1 else [0.25] for s in sizes]
    space = FactorSpace(FALCOR3D_FACTORS, sizes, values)
    return space.codes_to_values(space.all_codes())


def write_falcor(folder: Path, *, labels=None, size: int = 128) -> Path:
    """Falcor3D_down128/ in the official layout: images/NNNNNN.png and train-rec.labels (an .npy file)."""
    labels = falcor_labels() if labels is None else labels
    (folder / "images").mkdir(parents=True)
    with open(folder / "train-rec.labels", "wb") as fh:
        np.save(fh, labels)
    for i in range(labels.shape[0]):
        Image.fromarray(isaac_image(i, size)).save(folder / "images" / f"{i:06d}.png")
    return folder


# ---- SmallNORB ------------------------------------------------------------------------------------------

def norb_matrix(array: np.ndarray) -> bytes:
    """A NORB binary matrix: int32 magic, int32 rank, max(3, rank) int32 dimensions, little-endian data."""
    magic = {np.dtype(np.uint8): 0x1E3D4C55, np.dtype(np.int32): 0x1E3D4C54}[array.dtype]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes()
    return header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def norb_quadrants(category: int, instance: int, elevation: int, azimuth: int, lighting: int,
                   camera: int = 0, size: int = 96) -> np.ndarray:
    """A 96x96 grayscale image: its top-left quadrant encodes the factors, the others fixed levels (and
    camera 1 all 77), so the index mapping, the camera and the orientation all show after resizing."""
    img = np.full((size, size), 77, dtype=np.uint8)
    if camera == 0:
        h = size // 2
        img[:h, :h] = 3 + 64 * category + 16 * instance + 4 * elevation + 2 * azimuth + lighting
        img[:h, h:] = 200
        img[h:, :h] = 100
        img[h:, h:] = 0
    return img


NORB_INSTANCES = {"training": (4, 6), "testing": (0, 1)}  # reduced: two instances in each file


def write_smallnorb(folder: Path, *, parts=("training", "testing"), shuffle_seed: int = 3, gz: bool = True,
                    drop_row: bool = False) -> Path:
    """The official files (smallnorb-5x{46789,01235}x9x18x6x2x96x96-{training,testing}-{dat,cat,info}.mat.gz)
    for a reduced grid: categories 2, instances 2 per file, elevations 2, azimuths (0, 34), lightings 1; rows
    in a shuffled order, as the real files are in no grid order."""
    import gzip
    import itertools

    folder.mkdir(parents=True, exist_ok=True)
    stems = {"training": "smallnorb-5x46789x9x18x6x2x96x96-training",
             "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing"}
    for part in parts:
        rows = [(c, inst, e, az, lt) for c, inst, e, az, lt in
                itertools.product(range(2), NORB_INSTANCES[part], range(2), (0, 34), (0,))]
        order = np.random.default_rng(shuffle_seed).permutation(len(rows))
        rows = [rows[k] for k in order]
        if drop_row:
            rows = rows[:-1]
        ranks = {0: 0, 34: 1}
        all_inst = sorted(i for p in parts for i in NORB_INSTANCES[p])
        dat = np.stack([np.stack([norb_quadrants(c, all_inst.index(inst), e, ranks[az], lt, cam)
                                  for cam in (0, 1)]) for c, inst, e, az, lt in rows]).astype(np.uint8)
        cat = np.array([r[0] for r in rows], dtype=np.int32)
        info = np.array([r[1:] for r in rows], dtype=np.int32)
        for kind, arr in (("dat", dat), ("cat", cat), ("info", info)):
            data = norb_matrix(arr)
            name = f"{stems[part]}-{kind}.mat" + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return folder
