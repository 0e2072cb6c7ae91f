"""The four objects of the built-in dataset (cube, cylinder, sphere, capsule, in shape order): where a
ray first hits one, with its normal, and the signed distance to it (for soft shadows). Used by the
renderer in fqvae_cli.data.synthetic."""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def dims(shape: int, s: float) -> dict[str, float]:
    return [
        {"half": 0.55 * s},  # cube
        {"r": 0.55 * s, "h": 1.1 * s},  # cylinder: diameter = height
        {"r": 0.65 * s},  # sphere
        {"r": 0.42 * s, "half": 0.45 * s},  # capsule lying along x
    ][shape]


def sphere_hit(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
    oc = o - c
    b = np.einsum("ij,ij->i", oc, d)
    disc = b * b - (np.einsum("ij,ij->i", oc, oc) - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc >= 0) & (t > EPS), t, np.inf)


def tube_hit(o: np.ndarray, d: np.ndarray, r: float, axis: int, lo: float, hi: float,
              centre: tuple[float, float]) -> np.ndarray:
    """Entering hit of the side of a finite open cylinder along `axis` (0 = x, 1 = y)."""
    a0, a1 = [(1, 2), (0, 2)][axis]
    px, pz = o[:, a0] - centre[0], o[:, a1] - centre[1]
    dx, dz = d[:, a0], d[:, a1]
    a = dx * dx + dz * dz
    b = px * dx + pz * dz
    c = px * px + pz * pz - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    along = o[:, axis] + t * d[:, axis]
    ok = (disc >= 0) & (a > 1e-12) & (t > EPS) & (along >= lo) & (along <= hi)
    return np.where(ok, t, np.inf)


def object_hit(shape: int, s: float, o: np.ndarray, d: np.ndarray, normals: bool = True
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Distance along each ray to the object (inf on a miss) and the surface normal there."""
    g = dims(shape, s)
    if shape == 0:
        lo = np.array([-g["half"], 0.0, -g["half"]])
        hi = np.array([g["half"], 2 * g["half"], g["half"]])
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t1, t2 = (lo - o) * inv, (hi - o) * inv
        tn, tf = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf), np.nan_to_num(np.maximum(t1, t2), nan=np.inf)
        t_near, t_far = tn.max(axis=1), tf.min(axis=1)
        t = np.where((t_far >= t_near) & (t_near > EPS), t_near, np.inf)
        if not normals:
            return t, None
        axis = tn.argmax(axis=1)
        n = np.zeros_like(d)
        n[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
        return t, n
    if shape == 1:
        r, h = g["r"], g["h"]
        t_side = tube_hit(o, d, r, 1, 0.0, h, (0.0, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (h - o[:, 1]) / d[:, 1]
        px, pz = o[:, 0] + t_cap * d[:, 0], o[:, 2] + t_cap * d[:, 2]
        t_cap = np.where((d[:, 1] < 0) & (t_cap > EPS) & (px * px + pz * pz <= r * r), t_cap, np.inf)
        t = np.minimum(t_side, t_cap)
        if not normals:
            return t, None
        p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
        side = np.stack([p[:, 0], np.zeros(len(p)), p[:, 2]], axis=1) / r
        n = np.where((t_cap <= t_side)[:, None], np.array([0.0, 1.0, 0.0]), side)
        return t, n
    if shape == 2:
        c = np.array([0.0, g["r"], 0.0])
        t = sphere_hit(o, d, c, g["r"])
        if not normals:
            return t, None
        p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
        return t, (p - c) / g["r"]
    r, half = g["r"], g["half"]
    ends = [np.array([-half, r, 0.0]), np.array([half, r, 0.0])]
    t = np.minimum(tube_hit(o, d, r, 0, -half, half, (r, 0.0)),
                   np.minimum(sphere_hit(o, d, ends[0], r), sphere_hit(o, d, ends[1], r)))
    if not normals:
        return t, None
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    axis_point = np.stack([np.clip(p[:, 0], -half, half), np.full(len(p), r), np.zeros(len(p))], axis=1)
    return t, (p - axis_point) / r


def object_sdf(shape: int, s: float, p: np.ndarray) -> np.ndarray:
    """Signed distance from points to the object (for soft contact shading)."""
    g = dims(shape, s)
    if shape == 0:
        q = np.abs(p - np.array([0.0, g["half"], 0.0])) - g["half"]
        return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)
    if shape == 1:
        dxz = np.hypot(p[:, 0], p[:, 2]) - g["r"]
        dy = np.abs(p[:, 1] - g["h"] / 2) - g["h"] / 2
        return np.minimum(np.maximum(dxz, dy), 0.0) + np.hypot(np.maximum(dxz, 0), np.maximum(dy, 0))
    if shape == 2:
        return np.linalg.norm(p - np.array([0.0, g["r"], 0.0]), axis=1) - g["r"]
    q = p - np.stack([np.clip(p[:, 0], -g["half"], g["half"]), np.full(len(p), g["r"]),
                      np.zeros(len(p))], axis=1)
    return np.linalg.norm(q, axis=1) - g["r"]
