"""`fqvae table`: the paper's tables (and the field's) from the registry."""

from __future__ import annotations

from pathlib import Path

import typer

from fqvae_cli.cli.options import (
    DATASETS_OPT,
    DB_OPTION,
    DCI_ESTIMATOR_OPTION,
    KERNEL_FAMILY_OPT,
    PAPER_TABLE_OPT,
    PROFILE_OPT,
    PROTOCOL_OPT,
    ROWS_OPT,
    SET_OPT,
    Cells,
    split,
)


def register(app: typer.Typer) -> None:
    app.command(name="table")(table)


def print_table(reg, cells: Cells, fmt: str, out: Path | None, *, metrics: list[str] | None = None,
                 dci_estimator: str = "gbt") -> None:
    from fqvae_cli import console
    from fqvae_cli.errors import UsageError
    from fqvae_cli.outputs import check_output, write_bytes
    from fqvae_cli.runs.tables import render_text

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
    print_table(Registry(db), chosen, fmt, out, metrics=split(metrics), dci_estimator=dci_estimator)


def _render_rich(t):
    from rich.markup import escape
    from rich.table import Table as RichTable

    from fqvae_cli.runs.cell_sources import seeds_text, uncounted_lines
    from fqvae_cli.runs.tables import format_cell, header_lines, provenance_lines, undecided_lines

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
