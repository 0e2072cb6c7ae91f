"""`fqvae table` and `fqvae reproduce`: the paper's tables from the registry."""

from __future__ import annotations

from pathlib import Path

import typer

from fqvae_cli.cli.cells import (
    DATASETS_OPT,
    KERNEL_FAMILY_OPT,
    PAPER_TABLE_OPT,
    PROFILE_OPT,
    PROTOCOL_OPT,
    ROWS_OPT,
    SET_OPT,
    Cells,
    split,
)
from fqvae_cli.cli.options import DB_OPTION, DCI_ESTIMATOR_OPTION, DEVICE_OPTION


def register(app: typer.Typer) -> None:
    app.command(name="table")(table)
    app.command(name="reproduce")(reproduce)


def _print_table(reg, cells: Cells, fmt: str, out: Path | None, *, metrics: list[str] | None = None,
                 dci_estimator: str = "gbt") -> None:
    from fqvae_cli import console
    from fqvae_cli.errors import UsageError
    from fqvae_cli.outputs import check_output, write_bytes
    from fqvae_cli.tables import render_text

    if fmt not in ("rich", "markdown", "latex", "csv", "json"):
        raise UsageError(f"unknown format '{fmt}'; choose rich, markdown, latex, csv or json.")
    to_stdout = out is None
    if out is not None:
        out = check_output(out, reg)
        to_stdout = out is None
    t = cells.table(reg, metrics=metrics, dci_estimator=dci_estimator)
    if fmt == "rich" and to_stdout:
        console.out().print(_render_rich(t))
        if t.missing:
            console.out().print(f"\n{len(t.missing)} empty cell(s); to fill them:")
            for cmd in t.missing[:12]:
                console.out().print(f"  {cmd}", markup=False, soft_wrap=True)
            if len(t.missing) > 12:
                console.out().print(f"  ... and {len(t.missing) - 12} more")
        return
    text = render_text(t, "markdown" if fmt == "rich" else fmt)
    if out is not None:
        write_bytes(out, (text + "\n").encode())
        typer.echo(str(out))
    else:
        typer.echo(text)


def table(
    paper_table: str = PAPER_TABLE_OPT,
    profile: str = PROFILE_OPT,
    datasets: list[str] = DATASETS_OPT,
    rows: list[str] = ROWS_OPT,
    overrides: list[str] = SET_OPT,
    protocol: str = PROTOCOL_OPT,
    metrics: list[str] = typer.Option(None, "--metrics", "-m", help="Add columns beside the paper's: mig, sap, "
                                      "modularity (and explicitness), factor_vae, beta_vae, irs, unsupervised, or all "
                                      "(recorded by `fqvae evaluate --metrics`)."),
    kernel_family: str = KERNEL_FAMILY_OPT,
    dci_estimator: str = DCI_ESTIMATOR_OPTION,
    fmt: str = typer.Option("rich", "--format", "-f", help="rich, markdown, latex, csv or json."),
    out: Path = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    db: str = DB_OPTION,
) -> None:
    """Rebuild Table 1 or 2 from the registry: mean ± std over seeds, the published value and the
    difference beside each cell, best values marked; empty cells list the command that fills them.
    --metrics mig,sap adds those columns (the paper has no published values for them). The footer names
    the machines, kernel families and library versions of the runs, and the cells that mix them."""
    from fqvae_cli.registry.store import Registry

    chosen = Cells.from_options(paper_table, profile, datasets, rows, overrides, protocol, kernel_family)
    from fqvae_cli.metrics import record

    record("dci", dci_estimator)  # an unknown estimator: one sentence
    _print_table(Registry(db), chosen, fmt, out, metrics=split(metrics), dci_estimator=dci_estimator)


def reproduce(
    paper_table: str = typer.Option("1", "--paper-table", "-t", help="1 (all models) or 2 (codebook design)."),
    profile: str = typer.Option("quick", "--profile", "-p", help="quick (CPU, built-in synth3d) or paper (GPU)."),
    datasets: list[str] = typer.Option(None, "--datasets", help="Columns to fill; default the profile's."),
    models: list[str] = typer.Option(None, "--models", help="Only these models (comma-separated)."),
    rows: list[str] = typer.Option(None, "--rows", help="Only these table rows (keys, e.g. qvae-32x1)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Seeds per cell (0..N-1)."),
    workers: int = typer.Option(None, "--workers", min=1,
                                help="Parallel workers (local: processes here). Default: 2 on a CPU with 2+ cores "
                                     "(one thread each beats two threads on one run), else 1."),
    executor: str = typer.Option("local", "--executor", help="local or slurm."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a setting for every run, key=value."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Start failed cells again from scratch."),
    device: str = DEVICE_OPTION,
    partition: str = typer.Option(None, "--partition", help="Slurm partition."),
    gpus: int = typer.Option(0, "--gpus", help="Slurm: GPUs per worker job."),
    time_min: int = typer.Option(600, "--time", help="Slurm: time limit per worker job in minutes."),
    db: str = DB_OPTION,
) -> None:
    """Queue the runs of a paper table, train and evaluate them, then print the table.

    Safe to interrupt and run again: finished runs are kept and interrupted ones resume from their
    last checkpoint. `fqvae reproduce --paper-table 1 --profile quick` is the CPU-sized reproduction.
    Stopping it (Ctrl-C, SIGTERM) stops its workers: each checkpoints and marks its run interrupted.
    """
    from fqvae_cli import console
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import Interrupted
    from fqvae_cli.experiments import parse_overrides
    from fqvae_cli.paths import registry_url
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.sweep import ReproduceRequest, default_workers
    from fqvae_cli.sweep import reproduce as run_reproduce

    url = registry_url(db)
    reg = Registry(url)
    dev = resolve_device(device)
    if workers is None:
        workers = default_workers(dev)
    extra = parse_overrides(overrides or [])
    req = ReproduceRequest(paper_table, profile, split(datasets), split(rows), split(models), seeds, extra,
                           retry_failed, workers, executor, {"partition": partition, "gpus": gpus,
                                                             "time_min": time_min})

    def say(report) -> None:
        console.info(f"table {paper_table}, profile {profile}: {len(report.done)} cell run(s) done, "
                     f"{len(report.queued)} to train, {len(report.to_evaluate)} to evaluate, "
                     f"{len(report.busy)} running elsewhere, {len(report.failed)} failed (kept; see --retry-failed)")

    try:
        report = run_reproduce(reg, url, dev, req, on_report=say)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; its workers were stopped, finished runs are kept and interrupted ones "
                          "resume when you run the same command again.") from None
    chosen = Cells(paper_table, profile, split(datasets), split(rows), extra, report.protocol)
    _print_table(reg, chosen, "rich", None)


def _render_rich(t):
    from rich.markup import escape
    from rich.table import Table as RichTable

    from fqvae_cli.tables import format_cell, header_lines, provenance_lines, undecided_lines
    from fqvae_cli.uncounted import seeds_text, uncounted_lines

    rt = RichTable(title=t.title, caption="\n".join(header_lines(t)[1:]) +
                   "\ncell: ours (published, ours − published); bold = best in column beyond the seeds' spread"
                   + "".join("\n" + escape(u) for u in undecided_lines(t) + uncounted_lines(t))
                   + "".join("\n" + escape(p) for p in provenance_lines(t)), caption_justify="left")
    rt.add_column("model", no_wrap=True)
    rt.add_column("n", justify="right")
    for title in t.titles:
        rt.add_column(title, justify="right")
    for ds in t.datasets:
        rt.add_section()
        rt.add_row(f"[bold]{ds}[/bold]", "", *["" for _ in t.columns])
        for key, label in t.rows:
            c = t.cells[(ds, key)]
            marks = t.best.get((ds, key), set())
            rt.add_row(label, seeds_text(c), *[format_cell(t, c, j, j in marks, bold=("[bold]", "[/bold]"))
                                          for j in range(len(t.columns))])
    return rt
