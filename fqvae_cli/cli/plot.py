"""`fqvae runs plot`: training curves of one or more runs from the registry's history rows."""

from __future__ import annotations

import typer

from fqvae_cli.cli.options import DB_OPTION, RUN_HELP


def plot(
    runs: list[str] = typer.Argument(..., help="One or more runs (" + RUN_HELP.lower().rstrip(".") + ")."),
    metric: list[str] = typer.Option(None, "--metric", help="Metric names, e.g. loss/recon, lr, temperature, "
                                     "perplexity, dead_codes, or a pattern such as 'perplexity/*' (one panel "
                                     "per latent) (default: every training loss)."),
    out: str = typer.Option("curves.png", "--out", help="Output file; .png, .svg or .pdf (- for a PNG on stdout)."),
    smooth_window: int = typer.Option(1, "--smooth", min=1, help="Trailing mean over this many logged points."),
    log: str = typer.Option("auto", "--log", help="Log y scale: auto (where a metric spans decades), on or off."),
    db: str = DB_OPTION,
) -> None:
    """Draw training curves from the registry: one panel per metric, the runs overlaid and labelled."""
    import numpy as np

    from fqvae_cli.errors import UsageError
    from fqvae_cli.figures.plots import training_curves
    from fqvae_cli.outputs import check_output, shown, writing
    from fqvae_cli.registry.store import Registry

    if log not in ("auto", "on", "off"):
        raise UsageError(f"unknown --log '{log}'; choose auto, on or off.")
    with Registry(db) as reg:
        target = check_output(out, reg)
        fmt = "png" if target is None else target.suffix.lower().lstrip(".")
        if fmt not in ("png", "svg", "pdf"):
            raise UsageError(f"--out must end in .png, .svg or .pdf, not '{target.name}'.")
        recs = [reg.get_run(r) for r in runs]
        rows = {rec.id: [m for m in reg.metrics(rec.id) if m.protocol is None and m.step is not None]
                for rec in recs}
    names = _expand([n for item in (metric or []) for n in item.split(",") if n],
                    {m.name for ms in rows.values() for m in ms})
    if not names:
        names = sorted({m.name for ms in rows.values() for m in ms if m.name.startswith("loss/")})
    labels = {rec.id: rec.name or rec.short_id for rec in recs}
    if len(set(labels.values())) < len(recs):  # the same run twice, or shared names: ids tell them apart
        labels = {rec.id: f"{rec.short_id} {rec.model} seed {rec.seed}" for rec in recs}
    series: dict = {}
    for name in names:
        for rec in recs:
            pts = sorted((m.step, m.value) for m in rows[rec.id] if m.name == name)
            if pts:
                steps, values = (np.asarray(v, dtype=np.float64) for v in zip(*pts, strict=True))
                series.setdefault(name, {})[labels[rec.id]] = (steps, values)
    missing = [n for n in names if n not in series]
    if not series:
        known = sorted({m.name for ms in rows.values() for m in ms})
        raise UsageError(f"no training rows for {', '.join(names) or 'any loss'} in these runs; logged metrics: "
                         f"{', '.join(known) or 'none'}.")
    with writing(target) as tmp:
        logged = training_curves(series, tmp, fmt=fmt, window=smooth_window, log=log,
                                 title=", ".join(labels.values()))
    from fqvae_cli.console import info

    if missing:
        info(f"not logged by these runs: {', '.join(missing)}")
    if logged:
        info(f"log scale: {', '.join(logged)}")
    if target is not None:
        typer.echo(shown(target))


def _expand(names: list[str], logged: set[str]) -> list[str]:
    """Names as given, a pattern with * or ? replaced by the logged names it matches (in latent order:
    z2 before z10)."""
    import fnmatch
    import re

    def order(name: str) -> list:
        return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]

    out: list[str] = []
    for name in names:
        found = sorted(fnmatch.filter(logged, name), key=order) if any(c in name for c in "*?[") else [name]
        out += [n for n in found or [name] if n not in out]
    return out
