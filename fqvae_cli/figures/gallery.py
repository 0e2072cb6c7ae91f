"""One run's pictures for a report, gathered into a folder: its training curves and codebook health
(drawn from the registry), its snapshots (copied), and its traversal, swap, NMI and DCI importance
heatmaps and codebook usage: copied where the run already has them as figures, else drawn here from its
checkpoint, dataset and matrices. What cannot be drawn (no checkpoint, the dataset not prepared here, not
evaluated yet) becomes a sentence saying how to make it. Nothing is written into the run's folder or the
registry: a report only reads them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fqvae_cli.errors import FqvaeError
from fqvae_cli.files import sha256_file

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

CODEBOOK_IMAGES = 2000  # test images encoded for a codebook usage drawn by the report


@dataclass
class Picture:
    title: str
    path: str | None  # relative to the report folder; None when it could not be made
    note: str = ""  # how to make it, when it could not be


@dataclass
class Gallery:
    run: Any
    metrics: list[Any]  # latest metric records, per-latent codebook rows left out
    pictures: list[Picture] = field(default_factory=list)
    snapshots: list[tuple[int, str]] = field(default_factory=list)  # (iteration, relative path)


def _recorded(path: str, sha256: str) -> bool:
    p = Path(path)
    return p.is_file() and not p.is_symlink() and sha256_file(p) == sha256


def _newest_figure(arts: list[Any], prefix: str) -> Any | None:
    """The newest PNG figure the run recorded under its standard name (e.g. traverse_img3_step6000.png)."""
    found = [a for a in arts if a.kind == "figure" and Path(a.path).name.startswith(prefix)
             and a.path.endswith(".png") and _recorded(a.path, a.sha256)]
    return max(found, key=lambda a: (a.step or 0, a.id)) if found else None


def _curves(reg: Registry, run: Any, names: list[str], out: Path, title: str) -> bool:
    from fqvae_cli.figures.curves import training_curves

    rows = [m for m in reg.metrics(run.id) if m.protocol is None and m.step is not None and m.name in names]
    series: dict = {}
    for name in names:
        pts = sorted((m.step, m.value) for m in rows if m.name == name)
        if pts:
            steps, values = (np.asarray(v, dtype=np.float64) for v in zip(*pts, strict=True))
            series[name] = {run.short_id: (steps, values)}
    if not series:
        return False
    training_curves(series, out, fmt="png", title=title)
    return True


class _Model:
    """The run's model and data, loaded on first need (once), or the reason it cannot be (no checkpoint, its
    dataset not prepared here or not the data it was trained on)."""

    def __init__(self, reg: Registry, run: Any, device: Any):
        self.reg, self.run, self.device = reg, run, device
        self.loaded: Any = None
        self.error: str | None = None

    def get(self) -> Any:
        if self.loaded is None and self.error is None:
            from fqvae_cli.data.store import open_dataset
            from fqvae_cli.runs.evaluation import load_run

            try:
                open_dataset(self.run.dataset, build=False)  # a report never renders a dataset
                self.loaded = load_run(self.reg, self.run.id, self.device)
            except FqvaeError as exc:
                self.error = str(exc).rstrip(".")
        return self.loaded


def run_gallery(reg: Registry, run: Any, folder: Path, rel: str, device: Any) -> Gallery:
    """Gather or draw the pictures of `run` into `folder` (the report's `rel` subfolder)."""
    from fqvae_cli.models.zoo import ZOO

    folder.mkdir(parents=True, exist_ok=True)
    arts = reg.artifacts(run.id)
    latest = [m for m in reg.latest_metric_records([run.id]) if "/z" not in m.name]
    g = Gallery(run, latest)
    short = run.short_id
    losses = sorted({m.name for m in reg.metrics(run.id) if m.name.startswith("loss/") and m.protocol is None})
    if _curves(reg, run, losses, folder / "curves.png", f"training losses: {run.model} ({short})"):
        g.pictures.append(Picture("training curves", f"{rel}/curves.png"))
    if _curves(reg, run, ["perplexity", "dead_codes"], folder / "codebook_health.png",
               f"codebook health on held-out images: {run.model} ({short})"):
        g.pictures.append(Picture("codebook health (mean over latents)", f"{rel}/codebook_health.png"))
    snaps = sorted((a for a in arts if a.kind == "snapshot" and _recorded(a.path, a.sha256)),
                   key=lambda a: a.step or 0)
    if snaps:
        (folder / "snapshots").mkdir(exist_ok=True)
    for a in snaps:
        name = f"snapshots/{Path(a.path).name}"
        shutil.copyfile(a.path, folder / name)
        g.snapshots.append((a.step or 0, f"{rel}/{name}"))

    model = _Model(reg, run, device)
    drawers: list[tuple[str, str, str, Callable[[Path], str | None]]] = [
        ("latent traversal", "traverse_", f"fqvae traverse {short}", lambda p: _traversal(reg, model, p)),
        ("latent swap", "swap_", f"fqvae swap {short}", lambda p: _swap(model, p)),
        ("NMI (InfoMEC)", "heatmap_nmi", f"fqvae figures heatmap {short} --matrix nmi",
         lambda p: _heatmap(reg, run, "nmi", p)),
        ("DCI importance", "heatmap_importance", f"fqvae figures heatmap {short} --matrix importance",
         lambda p: _heatmap(reg, run, "importance", p)),
    ]
    if run.model in ZOO and ZOO[run.model].global_codebook:
        drawers.append(("codebook usage", "codebook", f"fqvae figures codebook {short}",
                        lambda p: _codebook(model, p, device)))
    for title, prefix, command, draw in drawers:
        target = folder / f"{prefix.rstrip('_')}.png"
        found = _newest_figure(arts, prefix)
        if found is not None:
            shutil.copyfile(found.path, target)
            g.pictures.append(Picture(title, f"{rel}/{target.name}"))
            continue
        try:
            why = draw(target)
        except FqvaeError as exc:
            why = str(exc).rstrip(".")
        if why is None:
            g.pictures.append(Picture(title, f"{rel}/{target.name}"))
        else:
            g.pictures.append(Picture(title, None, f"not drawn: {why}; make it with `{command}`, then write "
                                                   "the report again."))
    return g


def _traversal(reg: Registry, model: _Model, out: Path) -> str | None:
    from fqvae_cli.figures.compose import pick_image, traversal_figure

    loaded = model.get()
    if loaded is None:
        return model.error
    traversal_figure(reg, loaded, pick_image(loaded.dataset, None, None), 8, model.device).save(out, format="PNG")
    return None


def _swap(model: _Model, out: Path) -> str | None:
    from fqvae_cli.figures.compose import swap_figure
    from fqvae_cli.metrics.codes import held_out_subset

    loaded = model.get()
    if loaded is None:
        return model.error
    a, b = (int(v) for v in held_out_subset(loaded.dataset, 2, seed=1))  # as `fqvae swap` chooses them
    swap_figure(loaded, a, b, model.device).save(out, format="PNG")
    return None


def _heatmap(reg: Registry, run: Any, matrix: str, out: Path) -> str | None:
    from fqvae_cli.figures.compose import heatmap_figure

    heatmap_figure(reg, run, matrix, out, "png")
    return None


def _codebook(model: _Model, out: Path, device: Any) -> str | None:
    from fqvae_cli.figures.compose import codebook_figure

    loaded = model.get()
    if loaded is None:
        return model.error
    codebook_figure(loaded, list(range(loaded.cfg.model.latent_dim)), CODEBOOK_IMAGES, out, "png", device)
    return None
