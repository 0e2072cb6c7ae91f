"""synth3d: a procedural Shapes3D, the built-in default dataset.

A room corner (a floor and two walls meeting behind the object) and one object on the floor (cube,
cylinder, sphere or capsule), lit by a soft point light, seen by a camera that orbits the scene. The
six factors and their value grids are Shapes3D's: floor, wall and object hue (0.0..0.9), object
scale (0.75..1.25), shape (0..3) and camera orientation (-30..30 degrees).

Why it is fast: the picture's geometry depends only on (scale, shape, orientation) = 480
combinations, and the three hues only recolour three regions. So each geometry is ray-traced once
(4x4 supersampling, soft shadows, ambient occlusion at the seams and under the object, a specular
highlight) into per-pixel WEIGHTS of the floor, wall and object colours plus a white highlight term;
an image is then `w_floor * rgb(floor_hue) + w_wall * rgb(wall_hue) + w_object * rgb(object_hue) +
highlight`, a few vector operations per image. All arithmetic is elementwise numpy (no BLAS, no
threads inside a sum), so the same arguments give the same bytes."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from fqvae_cli.console import progress
from fqvae_cli.data import synth_shapes as shapes
from fqvae_cli.data.catalog import SHAPES3D_FACTORS
from fqvae_cli.data.factors import FactorSpace, SourcePlan
from fqvae_cli.errors import UsageError
from fqvae_cli.files import atomic_path

RENDERER_VERSION = 1
GRIDS = ("official", "small")
IMAGE_SIZES = (32, 64)
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")

# Value positions of the reduced grid (3,3,3,2,4,3 = 648 images): every shape, distinct hues.
_SMALL_KEEP = ([0, 3, 6], [1, 5, 8], [2, 6, 9], [0, 7], [0, 1, 2, 3], [0, 7, 14])

# Scene (world units, y up). The corner of the two walls is behind the object, so turning the
# camera changes which wall faces it and how each is lit: orientation shows even for a sphere.
_CAM_DIST, _CAM_HEIGHT, _TARGET_Y, _VFOV_DEG = 4.4, 2.0, 0.5, 46.0
_CORNER = np.array([0.0, 0.0, -2.6])
_LIGHT = np.array([-2.2, 5.5, 3.2])
_LIGHT_RADIUS = 0.7
_AMBIENT, _DIFFUSE, _SPECULAR, _SHININESS = 0.30, 0.78, 0.35, 36.0
_SATURATION = 0.88
_SUPERSAMPLE = 4


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def synth_space(grid: str = "official") -> FactorSpace:
    """The factor space of synth3d: Shapes3D's names and value grids (or the small test grid)."""
    if grid not in GRIDS:
        raise UsageError(f"unknown grid '{grid}'; choose one of: {', '.join(GRIDS)}.")
    hue = np.arange(10) / 10.0
    space = FactorSpace(SHAPES3D_FACTORS, (10, 10, 10, 8, 4, 15),
                        (hue, hue, hue, np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)))
    return space if grid == "official" else space.subgrid(_SMALL_KEEP)


def hue_rgb(hue: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of hues in [0, 1) at the scene's saturation and full value: (n, 3)."""
    h = np.asarray(hue, dtype=np.float64).reshape(-1, 1) * 6.0
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h, 6.0)
    return 1.0 - _SATURATION * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


# ---- ray tracing of one object shape ------------------------------------------------------------

def _room_planes() -> list[tuple[np.ndarray, np.ndarray]]:
    """(inward normal, point) of the floor and the two walls; the room is where all are >= 0."""
    r2 = np.sqrt(0.5)
    return [(np.array([0.0, 1.0, 0.0]), np.zeros(3)),
            (np.array([r2, 0.0, r2]), _CORNER),
            (np.array([-r2, 0.0, r2]), _CORNER)]


@lru_cache(maxsize=32)
def _camera_rays(orientation_deg: float, size: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and unit directions (size*size*ss*ss, 3), pixel-major, subsamples last. Cached:
    every (scale, shape) reuses the rays of each orientation."""
    th = np.deg2rad(orientation_deg)
    eye = np.array([_CAM_DIST * np.sin(th), _CAM_HEIGHT, _CAM_DIST * np.cos(th)])
    fwd = _normalize(np.array([0.0, _TARGET_Y, 0.0]) - eye)
    right = _normalize(np.cross(fwd, [0.0, 1.0, 0.0]))
    up = np.cross(right, fwd)
    sub = (np.arange(ss) + 0.5) / ss
    pix = np.arange(size)
    y = (pix[:, None, None, None] + sub[None, None, :, None]) / size  # (i, 1, a, 1)
    x = (pix[None, :, None, None] + sub[None, None, None, :]) / size  # (1, j, 1, b)
    tan = np.tan(np.deg2rad(_VFOV_DEG) / 2)
    nx = np.broadcast_to((2 * x - 1) * tan, (size, size, ss, ss)).reshape(-1, 1)
    ny = np.broadcast_to((1 - 2 * y) * tan, (size, size, ss, ss)).reshape(-1, 1)
    dirs = _normalize(fwd + nx * right + ny * up)
    eye.setflags(write=False)
    dirs.setflags(write=False)
    return eye, dirs


@lru_cache(maxsize=4)
def _light_samples(size: int, ss: int) -> np.ndarray:
    """One point of the disc-shaped light per ray (golden-angle samples, scrambled per pixel so
    the penumbra dithers instead of banding): (size*size*ss*ss, 3)."""
    k = ss * ss
    idx = np.arange(k)
    rad = _LIGHT_RADIUS * np.sqrt((idx + 0.5) / k)
    ang = idx * 2.399963229728653
    axis = _normalize(-_LIGHT)
    e1 = _normalize(np.cross(axis, [0.0, 0.0, 1.0]))
    e2 = np.cross(axis, e1)
    pts = _LIGHT + rad[:, None] * (np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    scramble = ((i * 5 + j * 3) % k).reshape(-1, 1)
    out = pts[(scramble + idx[None, :]) % k].reshape(-1, 3)
    out.setflags(write=False)
    return out


def _seam(d: np.ndarray) -> np.ndarray:
    # Darkening of a surface near a concave seam (ambient light is partly blocked there).
    return 1.0 - 0.45 * np.exp(-np.maximum(d, 0.0) / 0.45)


def geometry_weights(scale: float, shape: int, orientations: np.ndarray | list[float], size: int,
                     ss: int = _SUPERSAMPLE) -> np.ndarray:
    """Per-pixel weights (n_orientations, size*size, 4) of one object at several camera orientations:
    floor, wall and object colour, then the white highlight. Each pixel's weights sum to at most 1,
    so any colours in [0, 1] give pixels in [0, 1]."""
    orientations = np.atleast_1d(np.asarray(orientations, dtype=np.float64))
    rays = [_camera_rays(float(th), size, ss) for th in orientations]
    d = np.concatenate([r[1] for r in rays])
    o = np.repeat(np.stack([r[0] for r in rays]), size * size * ss * ss, axis=0)
    n_rays = len(d)
    planes = _room_planes()
    t_planes = []
    for normal, point in planes:
        den = d @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((point - o) @ normal) / den
        t_planes.append(np.where((den < -1e-12) & (t > shapes.EPS), t, np.inf))
    t_planes = np.stack(t_planes, axis=1)
    plane = t_planes.argmin(axis=1)
    t_room = t_planes[np.arange(n_rays), plane]
    t_obj, n_obj = shapes.object_hit(shape, scale, o, d)
    on_obj = t_obj < t_room
    t_hit = np.where(on_obj, t_obj, t_room)
    p = o + t_hit[:, None] * d
    normal = np.where(on_obj[:, None], n_obj, np.stack([pl[0] for pl in planes])[plane])

    light = np.tile(_light_samples(size, ss), (len(orientations), 1))
    to_light = light - p
    dist = np.linalg.norm(to_light, axis=1)
    ldir = to_light / dist[:, None]
    lambert = np.maximum(np.einsum("ij,ij->i", normal, ldir), 0.0)
    falloff = np.minimum((np.linalg.norm(_LIGHT) / dist) ** 1.5, 1.4)

    # Shadows: only the object casts them (it is convex, so it never shadows itself beyond n.l < 0).
    room = ~on_obj
    visible = np.ones(n_rays)
    t_shadow, _ = shapes.object_hit(shape, scale, p[room] + normal[room] * 1e-4, ldir[room], normals=False)
    visible[room] = np.isinf(t_shadow)

    # Ambient occlusion: room surfaces darken near the other planes and near the object; the
    # object darkens where it meets the floor.
    ao = np.ones(n_rays)
    for q, (pn, pp) in enumerate(planes):
        ao *= np.where(room & (plane != q), _seam((p - pp) @ pn), 1.0)
    near = np.full(n_rays, np.inf)
    near[room] = shapes.object_sdf(shape, scale, p[room])
    ao *= np.where(room, 1.0 - 0.6 * np.exp(-near / (0.3 * scale)), 1.0)
    ao *= np.where(on_obj, 1.0 - 0.35 * np.exp(-p[:, 1] / (0.25 * scale)), 1.0)

    half = _normalize(ldir - d)
    spec = np.where(on_obj & (lambert > 0),
                    _SPECULAR * np.maximum(np.einsum("ij,ij->i", normal, half), 0.0) ** _SHININESS, 0.0)
    intensity = _AMBIENT * ao + _DIFFUSE * lambert * visible * falloff * (0.5 + 0.5 * ao)
    intensity = np.minimum(intensity, 1.0 - spec)

    region = np.where(on_obj, 2, np.minimum(plane, 1))  # floor 0, either wall 1, object 2
    w = np.zeros((n_rays, 4))
    w[np.arange(n_rays), region] = intensity
    w[:, 3] = spec
    return w.reshape(len(orientations), size * size, ss * ss, 4).mean(axis=2)


def all_geometry_weights(space: FactorSpace, size: int) -> np.ndarray:
    """Weights (G, size*size, 4) float32 for every (scale, shape, orientation) of the space, in
    row-major order of those three factors (the fastest-varying block of the dataset order)."""
    scales, shapes, orients = space.values[3], space.values[4], space.values[5]
    out = np.empty((len(scales), len(shapes), len(orients), size * size, 4), dtype=np.float32)
    # One orientation per call: ~16k rays keep the working set in cache (one call for all 15
    # orientations runs slower), and threads do not help: the many small numpy calls hold the GIL.
    for a, sc in enumerate(scales):
        for b, sh in enumerate(shapes):
            for c in range(len(orients)):
                out[a, b, c] = geometry_weights(float(sc), int(sh), orients[c:c + 1], size)[0]
    return out.reshape(-1, size * size, 4)


# ---- composing images ---------------------------------------------------------------------------

class _Composer:
    """Images of one (floor hue, wall hue) block: every object hue x every geometry, dataset order."""

    def __init__(self, space: FactorSpace, weights: np.ndarray, size: int):
        self.size = size
        self.geoms = weights.shape[0]
        w = weights[..., :3]
        # 255 * colour, and +0.5 so that the truncating float -> uint8 cast rounds.
        self.floor = hue_rgb(space.values[0]).astype(np.float32) * 255
        self.wall = hue_rgb(space.values[1]).astype(np.float32) * 255
        objects = hue_rgb(space.values[2]).astype(np.float32) * 255
        self.w_floor, self.w_wall = w[..., 0:1], w[..., 1:2]
        self.bias = weights[..., 3:4] * np.float32(255) + np.float32(0.5)
        self.object_terms = w[None, ..., 2:3] * objects[:, None, None, :]  # (n_obj, G, P, 3)

    @property
    def block(self) -> int:
        return self.object_terms.shape[0] * self.geoms

    def compose(self, f: int, w: int) -> np.ndarray:
        base = self.w_floor * self.floor[f] + self.w_wall * self.wall[w]
        base += self.bias
        out = np.empty((self.object_terms.shape[0], self.geoms, self.size * self.size, 3), dtype=np.uint8)
        tmp = np.empty(base.shape, dtype=np.float32)
        for o in range(self.object_terms.shape[0]):
            np.add(base, self.object_terms[o], out=tmp)
            np.copyto(out[o], tmp, casting="unsafe")
        return out.reshape(-1, self.size, self.size, 3)


def render_chunks(space: FactorSpace, size: int, *, workers: int = 2,
                  progress: Callable[[str], None] | None = None
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """Every image of the space in dataset order, as (first index, uint8 (n, size, size, 3)) blocks.
    Blocks are composed on `workers` threads (numpy releases the GIL) with a bounded queue."""
    if size not in IMAGE_SIZES:
        raise UsageError(f"image size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {size}.")
    if tuple(space.names) != SHAPES3D_FACTORS:
        raise UsageError("synth3d renders the Shapes3D factors only.")
    if progress:
        progress("ray tracing geometry")
    composer = _Composer(space, all_geometry_weights(space, size), size)
    if progress:
        progress("colouring")
    pairs = [(f, w) for f in range(space.sizes[0]) for w in range(space.sizes[1])]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        nxt = 0
        for k in range(len(pairs)):
            while nxt < len(pairs) and len(pending) < 2 * max(1, workers):
                pending.append(pool.submit(composer.compose, *pairs[nxt]))
                nxt += 1
            yield k * composer.block, pending.popleft().result()


def render(space: FactorSpace, size: int, indices: np.ndarray | list[int]) -> np.ndarray:
    """Images at given dataset indices of the space, without rendering the rest: uint8 (n, S, S, 3).
    Equal, byte for byte, to the same rows of the full render."""
    codes = space.unravel(np.asarray(indices, dtype=np.int64))
    out = np.empty((len(codes), size, size, 3), dtype=np.uint8)
    for k, c in enumerate(codes):
        one = space.subgrid([[c[0]], [c[1]], [c[2]], [c[3]], [c[4]], [c[5]]])
        w = geometry_weights(float(one.values[3][0]), int(one.values[4][0]), one.values[5], size)
        w = w.astype(np.float32)  # the same float32 weights as the full render
        out[k] = _Composer(one, w, size).compose(0, 0)[0]
    return out


def write_h5(out: Path | str, *, image_size: int = 64, grid: str = "official", compress: bool = False,
             workers: int = 2) -> Path:
    """Write the synthetic dataset in the layout of 3dshapes.h5: `images` uint8 (N, S, S, 3) and
    `labels` float64 (N, 6) factor VALUES, row-major. Written to a temporary file and renamed."""
    import h5py  # only `fqvae data synth` writes HDF5; the import costs the other commands nothing

    space = synth_space(grid)
    n, s = space.size, image_size
    out = Path(out)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as fh, \
            progress(f"rendering {out.name}", total=n, unit="img") as bar:
        opts = {"chunks": (min(n, 256), s, s, 3), "compression": "gzip", "compression_opts": 4} \
            if compress else {}
        images = fh.create_dataset("images", shape=(n, s, s, 3), dtype=np.uint8, **opts)
        fh.create_dataset("labels", data=space.codes_to_values(space.all_codes()).astype(np.float64))
        for start, block in render_chunks(space, s, workers=workers, progress=bar.status):
            images[start:start + len(block)] = block
            bar.advance(len(block))
    return out


def store_plan(grid: str = "official", *, image_size: int = 32, workers: int = 2) -> SourcePlan:
    """The plan that renders synth3d straight into the prepared store (no intermediate file)."""
    space = synth_space(grid)

    def fill(images: np.ndarray, bar) -> None:
        for start, block in render_chunks(space, image_size, workers=workers, progress=bar.status):
            images[start:start + len(block)] = block
            bar.advance(len(block))

    source = {"name": "synth3d renderer", "renderer_version": RENDERER_VERSION, "grid": grid,
              "image_size": image_size}
    notes = [] if grid == "official" else ["small test grid (3,3,3,2,4,3), not the official grid"]
    return SourcePlan(space=space, image_size=image_size, fill=fill, source=source, notes=notes)
