"""`fqvae report`: the paper tables of the registry and every run in them, as one HTML page."""

from __future__ import annotations

from pathlib import Path

import typer

from fqvae_cli.cli.options import (
    DATASETS_OPT,
    DB_OPTION,
    DEVICE_OPTION,
    KERNEL_FAMILY_OPT,
    PROFILE_OPT,
    PROTOCOL_OPT,
    ROWS_OPT,
    SET_OPT,
)


def register(app: typer.Typer) -> None:
    app.command(name="report")(report)


def report(
    paper_table: str = typer.Option("1", "--paper-table", "-t", help="1, 2, or 1,2 for both."),
    profile: str = PROFILE_OPT,
    datasets: list[str] = DATASETS_OPT,
    rows: list[str] = ROWS_OPT,
    overrides: list[str] = SET_OPT,
    protocol: str = PROTOCOL_OPT,
    kernel_family: str = KERNEL_FAMILY_OPT,
    out: Path = typer.Option(..., "--out", help="Folder to write (index.html and its pictures); a new folder, "
                             "or one an earlier `fqvae report` wrote, which is replaced (refused if it holds files the "
                             "report did not write)."),
    device: str = DEVICE_OPTION,
    db: str = DB_OPTION,
) -> None:
    """Write an HTML report: the table(s) with their comparison figure, every cell linked to its runs, and
    per run its settings, metrics, curves, snapshots, traversal, swap, heatmaps and codebook usage. It
    opens from disk without a network. Figures a run lacks are drawn from its checkpoint and dataset; where
    they cannot be, the page says how to make them."""
    from fqvae_cli import console
    from fqvae_cli.cli.options import Cells, split
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import UsageError
    from fqvae_cli.figures.report import MARKER, check_report_folder, write_report
    from fqvae_cli.outputs import check_output_folder
    from fqvae_cli.registry.store import Registry

    numbers = split([paper_table]) or ["1"]
    if len(set(numbers)) < len(numbers):
        raise UsageError(f"--paper-table names a table twice: {paper_table}.")
    chosen = [Cells.from_options(n, profile, datasets, rows, overrides, protocol, kernel_family) for n in numbers]
    with Registry(db) as reg:
        target = check_output_folder(out, reg, marker=MARKER)
        check_report_folder(target)
        dev = resolve_device(device)
        tables = [c.table(reg) for c in chosen]
        shown = write_report(reg, tables, target, dev,
                             progress=lambda short: console.info(f"run {short}: pictures gathered"))
    empty = sum(len(t.missing) for t in tables)
    console.info(f"{len(shown)} run(s) in the report" + (f"; {empty} cell(s) have no runs" if empty else ""))
    typer.echo(str(target / "index.html"))
