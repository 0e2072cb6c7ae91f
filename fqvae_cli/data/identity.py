"""Which prepared dataset a run saw: a fingerprint recorded with the run and compared whenever the run
is resumed, evaluated or drawn, so numbers are never computed on other data than the run trained on
(a 648-image grid and the 480,000-image one share a name, and a model for 32x32 images cannot read 64x64).

The fingerprint comes from meta.json: name, image count, image size, factor sizes and the source record
(renderer and grid for the built-in dataset, file name, size and sha256 for converted ones). It leaves out
the preparation time, so preparing again from the same source keeps the identity."""

from __future__ import annotations

from typing import Any

from fqvae_cli.errors import DataError


def dataset_fingerprint(ds: Any) -> dict[str, Any]:
    """The identity of a PreparedDataset (see the module docstring)."""
    meta = ds.meta
    return {"name": meta.get("name"), "n_images": int(meta.get("n_images", len(ds))),
            "image_size": int(meta.get("image_size", ds.image_size)),
            "factor_sizes": [int(s) for s in ds.space.sizes], "source": dict(meta.get("source") or {})}


def fingerprint_text(fp: dict[str, Any]) -> str:
    """'synth3d (648 images 32x32, factors 3x3x3x2x4x3, small grid)' for messages."""
    src = fp.get("source") or {}
    parts = [f"{fp.get('n_images', 0):,} images {fp.get('image_size')}x{fp.get('image_size')}",
             "factors " + "x".join(str(s) for s in fp.get("factor_sizes", []))]
    if src.get("grid"):
        parts.append(f"{src['grid']} grid")
    if src.get("sha256"):
        parts.append(f"source sha256 {str(src['sha256'])[:12]}")
    return f"{fp.get('name')} ({', '.join(parts)})"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def fingerprint_differences(recorded: dict, here: dict) -> str:
    """'source.renderer_version is 2 here, 1 in the run's record': the fields of two fingerprints that differ
    (two descriptions can read alike while a field they do not print differs)."""
    a, b = _flat(recorded), _flat(here)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "(none)") != b.get(k, "(none)")]
    return "; ".join(f"{k} is {b.get(k, '(none)')!r} here, {a.get(k, '(none)')!r} in the run's record"
                     for k in keys[:4])


def require_same_dataset(run: Any, ds: Any, action: str) -> None:
    """Refuse to `action` (resume, evaluate, draw) a run on a dataset other than the one it trained on.
    Runs recorded before fingerprints existed are let through."""
    recorded = getattr(run, "dataset_fingerprint", None)
    if not recorded:
        return
    current = dataset_fingerprint(ds)
    if current != recorded:
        raise DataError(f"cannot {action} run {run.short_id}: it was trained on {fingerprint_text(recorded)} but the "
                        f"prepared dataset at {ds.path} is {fingerprint_text(current)} "
                        f"({fingerprint_differences(recorded, current)}); "
                        "point --root or FQVAE_DATA at the data it was trained on.")


def require_image_size(ds: Any, image_size: int, dataset: str) -> None:
    """A model is built for one image size; refuse data prepared at another before anything is written."""
    if ds.image_size != image_size:
        raise DataError(f"dataset '{dataset}' is prepared at {ds.image_size}x{ds.image_size} but the model "
                        f"takes {image_size}x{image_size} images; add --set model.image_size={ds.image_size} "
                        "or prepare the dataset at that size.")
