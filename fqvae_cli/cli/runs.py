"""`fqvae runs`: list, inspect, delete, export and import the runs in the registry."""

from __future__ import annotations

import typer

from fqvae_cli.cli.options import DB_OPTION, RUN_ARGUMENT
from fqvae_cli.registry.lifecycle import QUEUED, RUNNING
from fqvae_cli.registry.liveness import ALIVE

runs_app = typer.Typer(help="List, inspect, delete, export and import recorded runs.", no_args_is_help=True)


def _open(db: str | None):
    from fqvae_cli.registry.store import Registry

    return Registry(db)


def _find(reg, model, dataset, profile, status):
    return reg.find_runs(model=model, dataset=dataset, profile=profile, status=status)


def _time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _num(value: float) -> str:
    return f"{value:.6g}"


def _dumps(obj) -> str:
    import json

    # Non-finite metrics are written as NaN / Infinity (what Python's json and pandas read back).
    return json.dumps(obj, indent=2, default=str)


@runs_app.command("list")
def list_runs(
    model: str = typer.Option(None, "--model", help="Only this model."),
    dataset: str = typer.Option(None, "--dataset", help="Only this dataset."),
    profile: str = typer.Option(None, "--profile", help="Only this profile."),
    status: str = typer.Option(None, "--status", help="Only this status (queued, running, finished, "
                                                        "failed, interrupted)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    db: str = DB_OPTION,
) -> None:
    """List runs, oldest first."""
    from fqvae_cli.console import info, out

    with _open(db) as reg:
        runs = _find(reg, model, dataset, profile, status)
        if as_json:
            typer.echo(_dumps([r.to_json() for r in runs]))
            return
        if not runs:
            info(f"No runs match in {reg.display_url}.")
            return
        from rich import box
        from rich.table import Table

        # Compact borders so the table fits 80 columns (logs, CI); host and config are in `runs show`.
        table = Table(title=f"{len(runs)} run(s)", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("id", "name", "model", "dataset", "profile", "seed", "status", "created (UTC)"):
            table.add_column(col, justify="right" if col == "seed" else "left",
                             no_wrap=col in ("id", "seed", "status"), overflow="fold")
        for r in runs:
            table.add_row(r.short_id, r.name or "", r.model, r.dataset, r.profile, str(r.seed), r.status,
                          _time(r.created_at))
        out().print(table)


@runs_app.command("show")
def show(
    run: str = RUN_ARGUMENT,
    history: bool = typer.Option(False, "--history", help="Every metric row, not only the latest of each."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (run, starts, metrics, provenance, artifacts)."),
    db: str = DB_OPTION,
) -> None:
    """Show one run: its fields, config, where it trained, metrics (latest of each by default) with what
    computed each, and artifacts."""
    from fqvae_cli import provenance as prov
    from fqvae_cli.console import out

    with _open(db) as reg:
        rec = reg.get_run(run)
        metrics = reg.metrics(rec.id) if history else reg.latest_metric_records([rec.id])
        artifacts = reg.artifacts(rec.id)
        starts = reg.starts([rec.id])
        records = reg.provenance([s.provenance for s in starts] + [m.provenance for m in metrics])
    if as_json:
        typer.echo(_dumps({"run": rec.to_json(), "starts": [s.to_json() for s in starts],
                           "metrics": [m.to_json() for m in metrics],
                           "provenance": prov.labelled(records),
                           "artifacts": [a.to_json() for a in artifacts]}))
        return
    from rich.table import Table

    con = out()
    fields = Table.grid(padding=(0, 2))
    for key, value in rec.to_json().items():
        if key != "config" and value is not None:
            fields.add_row(f"[bold]{key}[/bold]", str(value))
    con.print(fields)
    con.print("[bold]config[/bold]")
    con.print(_dumps(rec.config), markup=False, highlight=False)
    # Each provenance record once, numbered in order of first use; rows refer to it by number.
    refs = {k: f"[{i}]" for i, k in enumerate(dict.fromkeys(
        [s.provenance for s in starts] + [m.provenance for m in metrics if m.provenance]), 1)}
    con.print("[bold]trained with[/bold] (each start: the iteration it started from, host, time, provenance)")
    for s in starts:
        con.print(f"  iteration {s.step}  {s.host or '?'}  {_time(s.started_at)}  {refs[s.provenance]} "
                  f"{prov.kernel_family(records.get(s.provenance))}", markup=False, highlight=False)
    if not starts:
        con.print(f"  {'not started yet' if rec.status == QUEUED else prov.NOT_RECORDED}", markup=False)
    if metrics:
        table = Table(title="metrics" + (" (every row)" if history else " (latest of each)"), title_justify="left")
        for col in ("protocol", "split", "name", "value", "step", "computed by"):
            table.add_column(col, justify="right" if col in ("value", "step") else "left")
        for m in metrics:
            table.add_row(m.protocol or "", m.split or "", m.name, _num(m.value),
                          "" if m.step is None else str(m.step), refs.get(m.provenance, prov.NOT_RECORDED))
        con.print(table)
    snapshots = sorted((a for a in artifacts if a.kind == "snapshot"), key=lambda a: a.step or 0)
    if snapshots:
        con.print(f"[bold]snapshots[/bold] {len(snapshots)}, iterations "
                  f"{', '.join(str(a.step) for a in snapshots)}; the latest: {snapshots[-1].path}", soft_wrap=True)
    if refs:
        con.print("[bold]provenance[/bold] (docs/provenance.md)")
        for key, ref in refs.items():
            lines = prov.describe(records.get(key))
            con.print(f"  {ref} {lines[0]}", markup=False, highlight=False)
            for line in lines[1:]:
                con.print(f"      {line}", markup=False, highlight=False, soft_wrap=True)
    if artifacts:
        # One line each, never truncated: paths are what people copy from here.
        con.print("[bold]artifacts[/bold] (kind, step, bytes, sha256, path)")
        for a in artifacts:
            step = "-" if a.step is None else str(a.step)
            con.print(f"  {a.kind}  {step}  {a.bytes}  {a.sha256[:12]}  {a.path}", soft_wrap=True, markup=False,
                      highlight=False)


@runs_app.command("delete")
def delete(
    run: str = RUN_ARGUMENT,
    yes: bool = typer.Option(False, "--yes", help="Really delete (rows and the run's folder)."),
    force: bool = typer.Option(False, "--force", help=f"Also delete a run whose status is {RUNNING}."),
    db: str = DB_OPTION,
) -> None:
    """Delete a run: its registry rows, then its folder `<workspace>/runs/<run id>/` with the files in it.
    Nothing outside the workspace's runs folder is ever removed, whatever id a registry row holds."""
    from pathlib import Path

    from fqvae_cli.console import console
    from fqvae_cli.errors import RegistryError, UsageError
    from fqvae_cli.registry.records import DamagedRow
    from fqvae_cli.registry.store import run_dir

    with _open(db) as reg:
        try:
            rec = reg.get_run(run)
        except DamagedRow as damaged:
            _delete_damaged(reg, damaged, yes, force)
            return
        artifacts = reg.artifacts(rec.id)
        try:
            folder = run_dir(rec)
        except RegistryError as exc:  # a malformed id never becomes a path; its rows can still go
            folder = None
            console().print(f"warning: {exc} Only its registry rows are deleted.", soft_wrap=True, markup=False)
        if not yes:
            raise UsageError(f"not deleting run {rec.short_id} ({len(artifacts)} artifact(s), folder {folder}) "
                             "without --yes.")
        if rec.status == RUNNING and not force and reg.holder_state(rec) == ALIVE:
            raise UsageError(f"run {rec.short_id} is running (on {rec.worker or rec.host or 'an unknown host'}); "
                             "stop it first, or add --force.")
        # Rows first: a crash after this leaves stray files, never rows that point at missing files.
        reg.delete_run(rec.id)
    if folder is None:
        console().print(f"deleted the rows of run {rec.short_id}.", soft_wrap=True, markup=False)
        return
    _remove_run_folder(folder)
    outside = [a.path for a in artifacts
               if Path(a.path).exists() and not Path(a.path).resolve().is_relative_to(folder.resolve())]
    # soft_wrap: paths stay on one line so they can be copied.
    for path in outside:
        console().print(f"warning: left {path} in place: it is outside the run folder.", soft_wrap=True,
                        markup=False)
    console().print(f"deleted run {rec.short_id} ({rec.model} on {rec.dataset}, seed {rec.seed}) and {folder}.",
                    soft_wrap=True, markup=False)


def _delete_damaged(reg, damaged, yes: bool, force: bool) -> None:
    """Delete a run whose row cannot be read (DamagedRow): its rows by id, then its folder."""
    from fqvae_cli.console import console
    from fqvae_cli.errors import UsageError
    from fqvae_cli.paths import runs_root
    from fqvae_cli.registry.lifecycle import RUNNING
    from fqvae_cli.registry.store import RUN_ID

    if not yes:
        raise UsageError(f"not deleting run {damaged.short_id} (its registry row is damaged: {damaged.why}) "
                         "without --yes.")
    if damaged.status == RUNNING and not force:
        raise UsageError(f"run {damaged.short_id} is marked running; stop it first, or add --force.")
    reg.delete_run(damaged.run_id)
    folder = runs_root() / damaged.run_id if RUN_ID.fullmatch(str(damaged.run_id)) else None
    if folder is not None:
        _remove_run_folder(folder)
    console().print(f"deleted the damaged run {damaged.short_id}" + (f" and {folder}." if folder else "'s rows."),
                    soft_wrap=True, markup=False)


def _remove_run_folder(folder) -> None:
    """Remove a run folder, only ever a direct child of the workspace's runs folder; a link there is
    unlinked, never followed."""
    import shutil

    from fqvae_cli.errors import RegistryError
    from fqvae_cli.paths import runs_root

    root = runs_root()
    if folder.parent != root or folder.name in ("", ".", ".."):
        raise RegistryError(f"refusing to delete {folder}: it is not a run folder inside {root}.")
    if folder.is_symlink():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)


@runs_app.command("export")
def export(
    run: list[str] = typer.Argument(None, help="Runs to export (default: every run the filters match); "
                                     "id, short id, unique id prefix, or name.", show_default=False),
    bundle: str = typer.Option(None, "--bundle", help="Write the runs as a portable bundle (a tar: rows, last "
                               "checkpoint, matrices, figures, sha256 of every file) to this file; see "
                               "docs/bundles.md.", show_default=False),
    all_checkpoints: bool = typer.Option(False, "--all", help="With --bundle: every kept checkpoint, not only "
                                         "the last."),
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
    out_file: str = typer.Option(None, "--out", help="Write to this file (atomically); - or omitted: stdout."),
    model: str = typer.Option(None, "--model", help="Only this model."),
    dataset: str = typer.Option(None, "--dataset", help="Only this dataset."),
    profile: str = typer.Option(None, "--profile", help="Only this profile."),
    status: str = typer.Option(None, "--status", help="Only this status."),
    db: str = DB_OPTION,
) -> None:
    """Export one row per run with its latest metrics (metric columns are named protocol:name@split), or
    with --bundle the runs themselves, to import elsewhere with `fqvae runs import`."""
    import csv
    import io

    refs = run or []
    from fqvae_cli.errors import UsageError
    from fqvae_cli.outputs import check_output, write_bytes

    if refs and any(v is not None for v in (model, dataset, profile, status)):
        raise UsageError("give runs or filters (--model, --dataset, --profile, --status), not both.")
    if bundle is not None:
        if out_file:
            raise UsageError("--bundle and --out both name the file to write; give one.")
        _export_bundle(refs, bundle, all_checkpoints, (model, dataset, profile, status), db)
        return
    if all_checkpoints:
        raise UsageError("--all applies to --bundle only.")
    if fmt not in ("csv", "json"):
        raise UsageError(f"unknown export format '{fmt}'; choose csv or json.")
    with _open(db) as reg:
        target = check_output(out_file, reg) if out_file else None
        runs = [reg.get_run(r) for r in refs] if refs else _find(reg, model, dataset, profile, status)
        latest: dict[str, dict[str, float]] = {r.id: {} for r in runs}
        for m in reg.latest_metric_records([r.id for r in runs]):
            latest[m.run_id][m.key] = m.value
    fields = ["id", "short_id", "name", "model", "dataset", "profile", "seed", "status", "created_at",
              "started_at", "finished_at", "host", "device", "worker", "version", "code_revision", "error"]
    if fmt == "json":
        text = _dumps([{**r.to_json(), "metrics": latest[r.id]} for r in runs]) + "\n"
    else:
        keys = sorted({k for values in latest.values() for k in values})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(fields + keys)
        for r in runs:
            row = r.to_json()
            writer.writerow([_cell("" if row[f] is None else row[f]) for f in fields]
                            + [repr(latest[r.id][k]) if k in latest[r.id] else "" for k in keys])
        text = buf.getvalue()
    if target is not None:
        from fqvae_cli.console import console

        write_bytes(target, text.encode())
        console().print(f"wrote {len(runs)} run(s) to {target}", soft_wrap=True, markup=False)
    else:
        typer.echo(text, nl=False)


def _cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts with =, +, -, @ (or a tab or carriage return)
    would be read as a formula (OWASP's CSV injection rule), so it is prefixed with a single quote.
    Numbers are written by repr and never start with these, except negative ones, which stay numbers."""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _export_bundle(refs, bundle: str, all_checkpoints: bool, filters: tuple, db: str | None) -> None:
    from fqvae_cli.bundle import export_bundle
    from fqvae_cli.console import console
    from fqvae_cli.errors import UsageError
    from fqvae_cli.outputs import check_output

    with _open(db) as reg:
        target = check_output(bundle, reg, what="--bundle", stdout_ok=False)
        runs = [reg.get_run(r) for r in refs] if refs else _find(reg, *filters)
        if not runs:
            raise UsageError(f"no runs match in {reg.display_url}; nothing to bundle.")
        done = export_bundle(reg, runs, target, all_checkpoints=all_checkpoints)
    for note in done.notes:
        console().print(f"note: {note}", soft_wrap=True, markup=False)
    console().print(f"wrote {len(done.runs)} run(s) ({', '.join(done.runs)}), {done.files} file(s), "
                    f"{done.bytes / 1e6:.1f} MB, to {done.path}", soft_wrap=True, markup=False)


@runs_app.command("import")
def import_(
    bundle: str = typer.Argument(..., help="A bundle written by `fqvae runs export --bundle`."),
    db: str = DB_OPTION,
) -> None:
    """Import the runs of a bundle, keeping their ids. Every file is checked against its sha256 first; a
    bundle with unsafe members (absolute paths, `..`, links, devices), changed files, a newer format, a
    dataset that contradicts the one prepared here, or a different run under an id already here is refused,
    and nothing changes. Importing never runs code from the bundle."""
    from fqvae_cli.bundle import install_bundle, open_bundle
    from fqvae_cli.console import console

    with open_bundle(bundle) as opened, _open(db) as reg:
        done = install_bundle(opened, reg)
        where = reg.display_url
    con = console()
    for plan in done.imported:
        r = plan.run
        con.print(f"imported run {r.short_id} ({r.model} on {r.dataset}, seed {r.seed}, {r.status}): "
                  f"{len(plan.files)} file(s), {len(plan.metrics)} metric row(s) into {where}",
                  soft_wrap=True, markup=False)
    for short in done.present:
        con.print(f"run {short} is already in {where} with everything the bundle holds for it; nothing to do.",
                  soft_wrap=True, markup=False)
    for note in done.notes:
        con.print(f"note: {note}", soft_wrap=True, markup=False)
    for plan in done.imported:
        typer.echo(plan.run.short_id)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    from fqvae_cli.cli.plot import plot

    runs_app.command("plot")(plot)
    app.add_typer(runs_app, name="runs")
