"""Composing the paper's figures from a loaded run: which image, which labels, which tiles, and writing
the picture. The CLI (`fqvae traverse`, `fqvae swap`, `fqvae figures`) parses options and calls these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fqvae_cli.data.sampler import to_float
from fqvae_cli.errors import NotFoundError, UsageError
from fqvae_cli.figures.grid import draw_grid, to_uint8
from fqvae_cli.figures.plots import pyplot
from fqvae_cli.figures.traversal import swap, traversal
from fqvae_cli.models.zoo import ZOO

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


def global_codebook_models() -> list[str]:
    """The zoo models codebook usage applies to."""
    return [name for name, spec in ZOO.items() if spec.global_codebook]


def pick_image(ds: Any, image: int | None, factors: str | None) -> int:
    """The dataset index of --image, or of the image with --factors codes, or the first test image."""
    if image is not None and factors is not None:
        raise UsageError("give --image or --factors, not both.")
    if factors is not None:
        try:
            codes = [int(v) for v in factors.split(",")]
        except ValueError:
            raise UsageError(f"--factors expects comma-separated integer codes, got '{factors}'.") from None
        sizes = ds.space.sizes
        if len(codes) != len(sizes) or any(not 0 <= c < s for c, s in zip(codes, sizes, strict=False)):
            raise UsageError(f"--factors needs {len(sizes)} codes within the sizes {tuple(sizes)} "
                             f"({', '.join(ds.space.names)}).")
        return int(ds.space.ravel(np.asarray([codes]))[0])
    if image is None:
        return int(ds.split()["test"][0])
    if not 0 <= image < len(ds):
        raise UsageError(f"image index {image} is out of range; the dataset has {len(ds)} images (0..{len(ds) - 1}).")
    return image


def latent_labels(reg: Registry, run: Any, factor_names: list[str], d: int) -> list[str]:
    """'z3 floor_hue' where the run has an NMI matrix (the factor the latent captures most)."""

    nmis = sorted(reg.artifacts(run.id, kind="matrix_nmi"), key=lambda a: (a.step or 0, a.id))
    labels = [f"z{i}" for i in range(d)]
    if nmis and Path(nmis[-1].path).exists():
        nmi = np.load(nmis[-1].path, allow_pickle=False)
        for i in range(min(d, nmi.shape[1])):
            if nmi[:, i].max() > 0:
                labels[i] = f"z{i} {factor_names[int(nmi[:, i].argmax())]}"
    return labels


def traversal_figure(reg: Registry, loaded: Any, idx: int, steps: int, device: Any) -> Any:
    """Figs. 2-4 as a PIL image: rows = latents, columns = the input then `steps` traversal values."""
    original = loaded.dataset.images_at(np.asarray([idx]))
    _, decoded, _ = traversal(loaded.model, to_float(original, device), steps)
    d = decoded.shape[0]
    tiles = np.concatenate([np.repeat(original[None], d, axis=0), to_uint8(decoded)], axis=1)
    labels = latent_labels(reg, loaded.run, list(loaded.dataset.space.names), d)
    img, _ = draw_grid(tiles, labels, ["input"] + [str(k) for k in range(steps)])
    return img


def swap_figure(loaded: Any, a: int, b: int, device: Any) -> Any:
    """Fig. 8 as a PIL image: image A with each latent taken from B (first row), and B from A."""
    imgs = loaded.dataset.images_at(np.asarray([a, b]))
    _, swapped = swap(loaded.model, to_float(imgs[:1], device), to_float(imgs[1:], device))
    d = swapped.shape[1]
    tiles = np.concatenate([imgs[:, None], to_uint8(swapped)], axis=1)
    img, _ = draw_grid(tiles, [f"A = {a}", f"B = {b}"], ["z"] + [f"z{i}" for i in range(d)])
    return img


def latest_matrix(reg: Registry, run: Any, matrix: str) -> tuple[np.ndarray, int]:
    """The newest recorded `matrix` ('nmi' or 'importance') of a run, factors x latents, and its step."""
    arts = sorted(reg.artifacts(run.id, kind=f"matrix_{matrix}"), key=lambda a: (a.step or 0, a.id))
    if not arts or not Path(arts[-1].path).is_file():
        raise NotFoundError(f"run {run.short_id} has no {matrix} matrix yet; run `fqvae evaluate {run.short_id}` "
                            "first.")
    m = np.load(arts[-1].path, allow_pickle=False)
    # importance is stored latents x factors (DCI's R); shown factors x latents like the NMI matrix
    return (m.T if matrix == "importance" else m), arts[-1].step or 0


def heatmap_figure(reg: Registry, run: Any, matrix: str, out: Path, fmt: str) -> None:
    """Figs. 5-7: the run's NMI or DCI importance matrix, factors x latents, annotated."""
    from fqvae_cli.data.catalog import get_dataset_spec
    from fqvae_cli.figures.plots import heatmap

    m, _ = latest_matrix(reg, run, matrix)
    names = list(get_dataset_spec(run.dataset).factor_names)
    if len(names) != m.shape[0]:
        names = [f"s{j}" for j in range(m.shape[0])]
    title = f"{'NMI' if matrix == 'nmi' else 'DCI importance'}: {run.model} on {run.dataset} ({run.short_id})"
    heatmap(m, names, out, title=title, fmt=fmt)


def codebook_figure(loaded: Any, latents: list[int], images: int, out: Path, fmt: str, device: Any) -> None:
    """Fig. 9: how often each global codebook entry is chosen per latent, on `images` test images."""
    from fqvae_cli.figures.plots import codebook_usage
    from fqvae_cli.metrics.codes import encode_codes, held_out_subset

    if not loaded.model.spec.global_codebook:
        raise UsageError(f"model {loaded.cfg.model.name} has no global codebook; codebook usage applies to "
                         f"{', '.join(global_codebook_models())}.")
    test = held_out_subset(loaded.dataset, images, seed=0)
    codes = encode_codes(loaded.model, loaded.dataset, test, device, batch_size=loaded.cfg.eval.batch_size)
    title = (f"codebook usage: {loaded.cfg.model.name} on {loaded.cfg.dataset} ({loaded.run.short_id}), "
             f"{len(test)} test images")
    codebook_usage(codes, latents, loaded.model.bottleneck.n_entries, out, title=title, fmt=fmt)


def write_image(img: Any, path: Path, fmt: str) -> None:
    """PNG/PDF through PIL; SVG embeds the exact pixel image through matplotlib. `path` is the caller's
    temporary file (fqvae_cli.outputs.writing publishes it)."""
    if fmt == "svg":
        plt = pyplot()
        w, h = img.size
        fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
        fig.figimage(np.asarray(img), 0, 0)
        fig.savefig(path, format="svg", dpi=100)
        plt.close(fig)
    else:
        img.save(path, format=fmt.upper())
