"""The HTML report: one page, `index.html`, with its pictures beside it in the same folder, that any
browser shows from disk without a network. At the top each paper table's comparison figure and the
table itself, every cell linking to the runs it averages; then a section per run with its settings,
metrics, training curves, codebook health, snapshots, traversal, swap, heatmaps and codebook usage.

It reads only the registry and the run folders; the folder is written whole, atomically (a report
written again replaces the previous one only once the new one is complete). The folder's marker file
lists every file the report wrote; a folder holding anything else (notes a user added beside the page) is
refused, so a report never deletes what it did not write."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fqvae_cli import __version__
from fqvae_cli.errors import UsageError
from fqvae_cli.figures.compare import compare_figure
from fqvae_cli.figures.gallery import Gallery, run_gallery
from fqvae_cli.files import atomic_dir
from fqvae_cli.runs.cell_sources import seeds_text, uncounted_lines
from fqvae_cli.runs.tables import format_cell, header_lines, undecided_lines

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

MARKER = ".fqvae-report"  # marks a folder fqvae wrote, which a later report may replace; lists its files
# What a report wrote before its marker listed the files: the page, the tables' figures, the runs' pictures.
_LEGACY = re.compile(r"index\.html|compare_table[0-9A-Za-z_-]+\.png|runs(/.*)?")

STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1250px; color: #111; line-height: 1.35; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #999; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #bbb; padding: .25em .45em; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; } .seeds a { margin-left: .3em; font-size: .85em; }
.note, .caption { color: #444; font-size: .85em; } .missing { color: #8a2b00; }
figure { display: inline-block; margin: .4em .8em .8em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { font-size: .8em; color: #333; }
.snapshots img { width: 150px; } pre { background: #f4f4f4; padding: .6em; font-size: .75em; overflow-x: auto; }
section.run { margin-top: 2.5em; }
"""


@dataclass
class TablePart:
    table: Any
    figure: str  # relative path of its comparison figure


def _cell_html(t: Any, ds: str, key: str, seeds: dict[str, int]) -> str:
    c = t.cells[(ds, key)]
    marks = t.best.get((ds, key), set())
    out = []
    for j in range(len(t.columns)):
        text = escape(format_cell(t, c, j, False, bold=("", "")))
        links = "".join(f'<a href="#run-{s}" title="run {s}">s{seeds.get(s, "?")}</a>' for s in c.runs)
        cls = ' class="best"' if j in marks else ""
        out.append(f"<td{cls}>{text}<span class=\"seeds\">{links}</span></td>")
    return "".join(out)


def _table_html(part: TablePart, seeds: dict[str, int]) -> str:
    t = part.table
    head = header_lines(t)
    rows = [f"<h2 id=\"table-{escape(t.number)}\">{escape(head[0])}</h2>",
            f'<figure><img src="{escape(part.figure)}" alt="comparison figure of table {escape(t.number)}">'
            "<figcaption>Every seed as a dot, the mean ± std over seeds as a square with a bar, the published "
            "value as a hollow diamond.</figcaption></figure>"]
    rows += [f'<p class="note">{escape(line)}</p>' for line in head[1:]]
    rows.append("<table><tr><th>model</th><th>n</th>" + "".join(f"<th>{escape(x)}</th>" for x in t.titles)
                + "</tr>")
    for ds in t.datasets:
        rows.append(f'<tr><th colspan="{len(t.columns) + 2}">{escape(ds)}</th></tr>')
        for key, label in t.rows:
            c = t.cells[(ds, key)]
            rows.append(f"<tr><td>{escape(label)}</td><td>{seeds_text(c)}</td>{_cell_html(t, ds, key, seeds)}</tr>")
    rows.append("</table>")
    rows.append('<p class="note">Each cell: ours (published, ours − published); sN links to the run of seed N; '
                "bold = best in the column beyond the spread of seeds.</p>")
    rows += [f'<p class="note">{escape(u)}</p>' for u in undecided_lines(t)]
    rows += [f'<p class="missing">{escape(u)}</p>' for u in uncounted_lines(t)]
    if t.missing:
        rows.append(f'<p class="missing">{len(t.missing)} cell(s) have no runs; to fill them:</p><pre>'
                    + escape("\n".join(t.missing)) + "</pre>")
    return "\n".join(rows)


def _run_html(g: Gallery) -> str:
    r = g.run
    title = f"{r.model} on {r.dataset}, seed {r.seed}: run {r.short_id}" + (f" ({r.name})" if r.name else "")
    out = [f'<section class="run" id="run-{escape(r.short_id)}"><h2>{escape(title)}</h2>',
           '<p class="note"><a href="#top">back to the table(s)</a></p>',
           f'<p class="note">status {escape(r.status)}; profile {escape(r.profile)}; id {escape(r.id)}; '
           f"host {escape(r.host or '?')}, device {escape(r.device or '?')}; "
           f"fqvae {escape(r.version or '?')}, revision {escape(r.code_revision or '?')}</p>"]
    if g.metrics:
        out.append("<table><tr><th>metric</th><th>protocol</th><th>split</th><th>value</th><th>step</th></tr>")
        for m in g.metrics:
            out.append(f"<tr><td>{escape(m.name)}</td><td>{escape(m.protocol or '')}</td>"
                       f"<td>{escape(m.split or '')}</td><td>{m.value:.6g}</td>"
                       f"<td>{'' if m.step is None else m.step}</td></tr>")
        out.append("</table>")
    for p in g.pictures:
        if p.path is None:
            out.append(f'<p class="missing"><b>{escape(p.title)}</b>: {escape(p.note)}</p>')
        else:
            out.append(f'<figure><img src="{escape(p.path)}" alt="{escape(p.title)}">'
                       f"<figcaption>{escape(p.title)}</figcaption></figure>")
    if g.snapshots:
        out.append('<h3>snapshots during training</h3><div class="snapshots">')
        for step, path in g.snapshots:
            out.append(f'<figure><a href="{escape(path)}"><img src="{escape(path)}" alt="snapshot at iteration '
                       f'{step}"></a><figcaption>iteration {step}</figcaption></figure>')
        out.append('</div><p class="caption">Each snapshot: fixed held-out test images, their reconstructions, '
                   "and a traversal of the first image, one row per latent.</p>")
    else:
        out.append('<p class="note">no snapshots (the run trained before snapshots existed, or with '
                   "train.snapshot_every=0).</p>")
    out.append("<details><summary>settings (config)</summary><pre>" + escape(json.dumps(r.config, indent=2))
               + "</pre></details></section>")
    return "\n".join(out)


def write_report(reg: Registry, tables: list[Any], out: Path, device: Any, *, progress: Any = None) -> list[str]:
    """Write the report of `tables` into the folder `out` (checked by outputs.check_output_folder);
    returns the short ids of the runs it shows."""
    runs: dict[str, Any] = {}
    for t in tables:
        for c in t.cells.values():
            for short in c.runs:
                runs.setdefault(short, None)
    records = {short: reg.get_run(short) for short in runs}
    check_report_folder(out)
    with atomic_dir(out, replace=True) as tmp:
        parts = []
        for t in tables:
            name = f"compare_table{t.number}.png"
            compare_figure(t, list(t.columns), tmp / name, "png")
            parts.append(TablePart(t, name))
        galleries = []
        for short, run in records.items():
            galleries.append(run_gallery(reg, run, tmp / "runs" / short, f"runs/{short}", device))
            if progress is not None:
                progress(short)
        (tmp / "index.html").write_text(_page(parts, galleries, reg), encoding="utf-8")
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        (tmp / MARKER).write_text(json.dumps({"written_by": "fqvae report", "files": written}, indent=0) + "\n")
        check_report_folder(out)  # again: a file added while the pictures were drawn is kept too
    return list(records)


def _written(folder: Path) -> tuple[set[str], set[str]] | None:
    """(files, folders) an earlier report says it wrote into `folder`; None for a marker from before the
    list was kept (its layout is known instead)."""
    try:
        listed = json.loads((folder / MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    files = {f for f in listed if isinstance(f, str)}
    return files, {p.as_posix() for f in files for p in Path(f).parents if p.as_posix() != "."}


def foreign_entries(folder: Path) -> list[str]:
    """What `folder` holds that no report wrote (relative paths, a foreign folder once, not its contents)."""
    if not folder.is_dir():
        return []
    known = _written(folder)
    foreign: list[str] = []
    for top, dirs, files in os.walk(folder):
        base = Path(top).relative_to(folder)
        for name in sorted(dirs):
            rel = (base / name).as_posix()
            if (rel not in known[1]) if known is not None else not _LEGACY.fullmatch(rel):
                foreign.append(rel + "/")
        dirs[:] = [d for d in dirs if (base / d).as_posix() + "/" not in foreign]
        for name in sorted(files):
            rel = (base / name).as_posix()
            if rel != MARKER and ((rel not in known[0]) if known is not None else not _LEGACY.fullmatch(rel)):
                foreign.append(rel)
    return sorted(foreign)


def check_report_folder(folder: Path) -> None:
    """Refuse to replace a report folder that holds files the report did not write (UsageError)."""
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UsageError(f"--out {folder} holds files an earlier report did not write ({shown}); a report replaces "
                         "its folder whole, so move those out or choose a new folder.")


def _page(parts: list[TablePart], galleries: list[Gallery], reg: Registry) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = " · ".join(f'<a href="#table-{escape(p.table.number)}">table {escape(p.table.number)}</a>' for p in parts)
    body = [f"<h1 id=\"top\">fqvae report</h1><p class=\"note\">{when}; registry {escape(reg.display_url)}; fqvae "
            f"{escape(__version__)}; {len(galleries)} run(s). {nav}</p>"]
    body += [_table_html(p, {g.run.short_id: g.run.seed for g in galleries}) for p in parts]
    body += [_run_html(g) for g in galleries]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fqvae report</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
