"""`fqvae traverse`, `fqvae swap` and `fqvae figures heatmap|codebook`: the paper's figures from a run.
Each figure is written (PNG by default), recorded as a run artifact and its path printed.
`fqvae figures compare`: a paper table's cells as one figure."""

from __future__ import annotations

from pathlib import Path

import typer

from fqvae_cli.cli.options import (
    DATASETS_OPT,
    DB_OPTION,
    DEVICE_OPTION,
    KERNEL_FAMILY_OPT,
    PAPER_TABLE_OPT,
    PROFILE_OPT,
    PROTOCOL_OPT,
    ROWS_OPT,
    RUN_ARGUMENT,
    SET_OPT,
)

figures_app = typer.Typer(help="Heatmaps (Figs. 5-7) and codebook usage (Fig. 9) of a run; a table's cells "
                          "compared in one figure.", no_args_is_help=True)

# Options shared by the figure commands (typer builds each command's parameters from these anew).
CHECKPOINT_OPT = typer.Option(None, "--checkpoint", help="Checkpoint step (default: last).")
FORMAT_OPT = typer.Option("png", "--format", help="png (default), pdf or svg.")
OUT_OPT = typer.Option(None, "--out", help="Output file, or - for standard output (default: the run's figures "
                       "folder, recorded with the run).")


def register(app: typer.Typer) -> None:
    app.command(name="traverse")(traverse)
    app.command(name="swap")(swap)
    app.add_typer(figures_app, name="figures")


def _format(fmt: str) -> str:
    from fqvae_cli.errors import UsageError

    fmt = fmt.lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise UsageError(f"unknown format '{fmt}'; choose png, pdf or svg.")
    return fmt


# `--out` not given: the figure goes to the run's figures folder and is recorded as an artifact.
RUN_FOLDER = Path("<run figures folder>")


def _target(out: Path | None, fmt: str, reg) -> Path | None:
    """The user's --out, checked before any work (None: standard output), or RUN_FOLDER."""
    from fqvae_cli.errors import UsageError
    from fqvae_cli.outputs import check_output

    if out is None:
        return RUN_FOLDER
    target = check_output(out, reg)
    suffix = "" if target is None else target.suffix.lower().lstrip(".")
    if suffix in ("png", "pdf", "svg") and suffix != fmt:
        raise UsageError(f"--out {target.name} names a {suffix.upper()} file but --format is {fmt}; make them agree.")
    return target


def _publish(reg, run, kind: str, step: int, fmt: str, target: Path | None, draw) -> None:
    """Draw into a temporary file, publish it atomically (or to standard output), record it, print its path."""
    from fqvae_cli.files import sha256_file
    from fqvae_cli.outputs import writing
    from fqvae_cli.registry.store import run_dir

    path = run_dir(run) / "figures" / f"{kind}_step{step}.{fmt}" if target is RUN_FOLDER else target
    with writing(path) as tmp:
        draw(tmp)
    if path is None:
        return
    reg.add_artifact(run.id, kind="figure", path=str(path), bytes=path.stat().st_size,
                     sha256=sha256_file(path), step=step)
    typer.echo(str(path))


def traverse(
    run: str = RUN_ARGUMENT,
    image: int = typer.Option(None, "--image", help="Dataset index of the image (default: first test image)."),
    factors: str = typer.Option(None, "--factors", help="The image by factor codes, e.g. 0,3,5,2,1,7."),
    steps: int = typer.Option(8, "--steps", min=2, max=32, help="Values per latent."),
    checkpoint: int = CHECKPOINT_OPT,
    fmt: str = FORMAT_OPT,
    out: Path = OUT_OPT,
    device: str = DEVICE_OPTION,
    db: str = DB_OPTION,
) -> None:
    """Latent traversal (Figs. 2-4): rows = latents, columns = the original then `steps` values
    (global codebook min..max, QLAE's own codebook, or z_i +/- 3 for continuous models)."""
    from fqvae_cli.device import resolve_device
    from fqvae_cli.figures.compose import pick_image, traversal_figure, write_image
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.evaluation import load_run

    fmt = _format(fmt)
    reg = Registry(db)
    target = _target(out, fmt, reg)
    dev = resolve_device(device)
    loaded = load_run(reg, run, dev, step=checkpoint)
    idx = pick_image(loaded.dataset, image, factors)
    img = traversal_figure(reg, loaded, idx, steps, dev)
    _publish(reg, loaded.run, f"traverse_img{idx}", loaded.step, fmt, target, lambda p: write_image(img, p, fmt))


def swap(
    run: str = RUN_ARGUMENT,
    pair: str = typer.Option(None, "--pair", help="Two dataset indices i,j (default: two test images)."),
    checkpoint: int = CHECKPOINT_OPT,
    fmt: str = FORMAT_OPT,
    out: Path = OUT_OPT,
    device: str = DEVICE_OPTION,
    db: str = DB_OPTION,
) -> None:
    """Latent swap (Fig. 8): column z shows both inputs; column z_i decodes image A with latent i taken
    from image B (first row) and B with latent i from A (second row)."""
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import UsageError
    from fqvae_cli.figures.compose import swap_figure, write_image
    from fqvae_cli.metrics.codes import held_out_subset
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.evaluation import load_run

    fmt = _format(fmt)
    reg = Registry(db)
    target = _target(out, fmt, reg)
    dev = resolve_device(device)
    loaded = load_run(reg, run, dev, step=checkpoint)
    n = len(loaded.dataset)
    if pair is None:
        # two random test images (the split is stored in factor order: neighbours look alike)
        a, b = (int(v) for v in held_out_subset(loaded.dataset, 2, seed=1))
    else:
        try:
            a, b = (int(v) for v in pair.split(","))
        except ValueError:
            raise UsageError(f"--pair expects two comma-separated dataset indices, got '{pair}'.") from None
        for v in (a, b):
            if not 0 <= v < n:
                raise UsageError(f"image index {v} is out of range; the dataset has {n} images (0..{n - 1}).")
    img = swap_figure(loaded, a, b, dev)
    _publish(reg, loaded.run, f"swap_{a}_{b}", loaded.step, fmt, target, lambda p: write_image(img, p, fmt))


@figures_app.command("heatmap")
def heatmap(
    run: str = typer.Argument(..., help="Run id, short id, prefix or name (evaluated)."),
    matrix: str = typer.Option("nmi", "--matrix", help="nmi (InfoMEC, Fig. 5) or importance (DCI, Figs. 6-7)."),
    fmt: str = FORMAT_OPT,
    out: Path = OUT_OPT,
    db: str = DB_OPTION,
) -> None:
    """Factors x latents heatmap of the NMI matrix or the DCI importance matrix, annotated."""
    from fqvae_cli.errors import UsageError
    from fqvae_cli.figures.compose import heatmap_figure, latest_matrix
    from fqvae_cli.registry.store import Registry

    fmt = _format(fmt)
    if matrix not in ("nmi", "importance"):
        raise UsageError(f"unknown matrix '{matrix}'; choose nmi or importance.")
    reg = Registry(db)
    target = _target(out, fmt, reg)
    r = reg.get_run(run)
    _, step = latest_matrix(reg, r, matrix)
    _publish(reg, r, f"heatmap_{matrix}", step, fmt, target, lambda p: heatmap_figure(reg, r, matrix, p, fmt))


@figures_app.command("codebook")
def codebook(
    run: str = typer.Argument(..., help="Run id, short id, prefix or name (a global-codebook model)."),
    latents: str = typer.Option(None, "--latents", help="Comma-separated latent indices (default: all)."),
    images: int = typer.Option(10000, "--images", min=1, help="Test images to encode (at most the split)."),
    checkpoint: int = CHECKPOINT_OPT,
    fmt: str = FORMAT_OPT,
    out: Path = OUT_OPT,
    device: str = DEVICE_OPTION,
    db: str = DB_OPTION,
) -> None:
    """Codebook usage (Fig. 9): per latent, how often each global codebook entry is chosen on the test split."""
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import UsageError
    from fqvae_cli.figures.compose import codebook_figure, global_codebook_models
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.evaluation import load_run

    fmt = _format(fmt)
    reg = Registry(db)
    target = _target(out, fmt, reg)
    dev = resolve_device(device)
    loaded = load_run(reg, run, dev, step=checkpoint)
    if not loaded.model.spec.global_codebook:
        raise UsageError(f"model {loaded.cfg.model.name} has no global codebook; codebook usage applies to "
                         f"{', '.join(global_codebook_models())}.")
    d = loaded.cfg.model.latent_dim
    if latents:
        try:
            chosen = [int(v) for v in latents.split(",")]
        except ValueError:
            raise UsageError(f"--latents expects comma-separated integers, got '{latents}'.") from None
        bad = [i for i in chosen if not 0 <= i < d]
        if bad:
            raise UsageError(f"latent index {bad[0]} is out of range; this model has {d} latents (0..{d - 1}).")
    else:
        chosen = list(range(d))
    _publish(reg, loaded.run, "codebook", loaded.step, fmt, target,
             lambda p: codebook_figure(loaded, chosen, images, p, fmt, dev))


@figures_app.command("compare")
def compare(
    paper_table: str = PAPER_TABLE_OPT,
    profile: str = PROFILE_OPT,
    datasets: list[str] = DATASETS_OPT,
    rows: list[str] = ROWS_OPT,
    overrides: list[str] = SET_OPT,
    protocol: str = PROTOCOL_OPT,
    kernel_family: str = KERNEL_FAMILY_OPT,
    metrics: list[str] = typer.Option(None, "--metrics", "-m", help="Panels, comma-separated: D, I, C, InfoM, "
                                      "InfoE, InfoC, MSE, or another metric's column (mig, sap, modularity, "
                                      "...); default the paper's seven."),
    out: str = typer.Option("compare.png", "--out", help="Output file; .png, .svg or .pdf (- for a PNG on stdout)."),
    db: str = DB_OPTION,
) -> None:
    """The cells of `fqvae table` with the same options, as one figure: per metric a panel, per model every
    seed as a dot, the mean ± std over seeds, and the published value as a hollow diamond."""
    from fqvae_cli.cli.options import Cells, split
    from fqvae_cli.console import info
    from fqvae_cli.errors import UsageError
    from fqvae_cli.figures.compare import compare_figure, panel_keys
    from fqvae_cli.outputs import check_output, shown, writing
    from fqvae_cli.registry.store import Registry

    keys, extra = panel_keys(split(metrics))
    chosen = Cells.from_options(paper_table, profile, datasets, rows, overrides, protocol, kernel_family)
    with Registry(db) as reg:
        target = check_output(out, reg)
        fmt = "png" if target is None else target.suffix.lower().lstrip(".")
        if fmt not in ("png", "svg", "pdf"):
            raise UsageError(f"--out must end in .png, .svg or .pdf, not '{target.name}'.")
        t = chosen.table(reg, metrics=extra or None)
    with writing(target) as tmp:
        compare_figure(t, keys, tmp, fmt)
    if t.missing:
        info(f"{len(t.missing)} cell(s) have no runs; `fqvae table` with the same options lists the commands that "
             "fill them.")
    if target is not None:
        typer.echo(shown(target))
