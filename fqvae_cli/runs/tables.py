"""Tables 1 and 2 rebuilt from the registry, beside the published numbers.

A cell (dataset, row) collects the finished runs whose whole training setup equals the one the profile
gives that row: model settings (the profile's Table A.3 weights plus the row's codebook settings),
trunk, steps, batch, schedules and optimizer, and the dataset (its name, and its prepared identity where
both the run and the store know it). A sweep over other weights or a 2-step smoke test never leaks into
a table. Setups are compared after filling defaults, so a field added later with a default keeps old
runs in their cells; settings that do not change the trained model (threads, checkpoint and log
intervals, where the data lives) and the evaluation section are left out. Each cell shows mean ± std
over distinct seeds (the newest run of a seed counts), the seed count, the published value and the
difference; the best mean per column is marked (highest, lowest for MSE) only where it beats the second
best by more than their standard deviations, with n >= 2 seeds in both; otherwise the table says it
cannot tell. Which runs a cell holds, and the runs it leaves out (named beside it), are in
cell_sources.py. Rows for models outside the paper (`--rows fsq`) can be added; they have no published
values. The footer says where the numbers came from (machines, kernel families, library versions; cell_sources.py), and
`kernel_family` keeps only runs trained in one kernel family."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fqvae_cli.data.catalog import get_dataset_spec
from fqvae_cli.errors import UsageError
from fqvae_cli.experiments import (
    COLUMN_TITLES,
    COLUMNS,
    load_experiments,
    profile_of,
    table_columns,
    table_of,
)
from fqvae_cli.metrics import DEFAULT_METRICS, MSE_SCALE, parse_metrics
from fqvae_cli.models.zoo import ZOO
from fqvae_cli.provenance import labelled
from fqvae_cli.registry.lifecycle import FINISHED, STOPPED
from fqvae_cli.runs.cell_sources import (
    Sources,
    cell_families,
    cell_runs,
    check_family,
    dataset_identity,
    expected_setup,
    footer_lines,
    left_out,
    note,
    one_per_seed,
    seeds_text,
    uncounted_lines,
)

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

SCALE = {"mse": MSE_SCALE}


@dataclass
class Cell:
    runs: list[str] = field(default_factory=list)  # one run per distinct seed
    mean: list[float | None] | None = None  # per column; None where no run of the cell has the metric
    std: list[float | None] | None = None
    published: list[float | None] | None = None  # None for columns the paper does not report
    counts: list[int] | None = None  # per column, the seeds that have the metric (extra columns may lack it)
    values: list[list[float | None]] = field(default_factory=list)  # per run (seed) of `runs`, per column
    # run short id -> provenance hashes of its training starts, and of the metric rows shown (origins.py)
    trained_on: dict[str, list[str]] = field(default_factory=dict)
    scored_on: dict[str, list[str | None]] = field(default_factory=dict)
    uncounted: dict[str, list[str]] = field(default_factory=dict)  # reason -> runs left out (uncounted.py)

    @property
    def n(self) -> int:
        return len(self.runs)


@dataclass
class Table:
    number: str
    title: str
    profile: str
    protocol: str
    datasets: list[str]
    rows: list[tuple[str, str]]  # (key, label)
    cells: dict[tuple[str, str], Cell]  # (dataset, key) -> cell
    published_from: dict[str, str]  # dataset -> dataset whose published numbers are shown
    missing: list[str]  # commands that fill the empty cells
    best: dict[tuple[str, str], set[int]]  # (dataset, key) -> column indices marked best
    undecided: dict[str, list[str]] = field(default_factory=dict)  # dataset -> columns with no best, and why
    overrides: list[str] = field(default_factory=list)  # the --set settings the cells' runs were trained with
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))  # recorded metric keys
    titles: list[str] = field(default_factory=lambda: list(COLUMN_TITLES))
    provenance: dict[str, dict] = field(default_factory=dict)  # hash -> record, of the cells' runs
    kernel_family: str | None = None  # only runs trained in this kernel family
    left_out: int = 0  # runs of the cells' setups that the kernel-family filter left out
    dci_estimator: str = "gbt"  # the estimator of every DCI cell (a table never mixes them)


def table_rows(spec: dict, number: str, rows: list[str] | None = None, models: list[str] | None = None) -> list[dict]:
    """The rows to show or fill: the table's rows, or those named by key; a name that is no row of the
    table but a model of the zoo becomes an extra row outside the paper (no published values)."""
    by_key = {r["key"]: r for r in spec["rows"]}
    chosen = []
    for k in rows or list(by_key):
        if k in by_key:
            chosen.append(by_key[k])
        elif k in ZOO:
            chosen.append({"key": k, "label": f"{k} (not in the paper)", "model": k, "set": {}})
        else:
            raise UsageError(f"table {number} has no row '{k}' and the zoo no such model; its rows are: "
                             f"{', '.join(by_key)}; models: {', '.join(ZOO)}.")
    chosen = [r for r in chosen if not models or r["model"] in models]
    if not chosen:
        raise UsageError(f"no row of table {number} matches the given --rows/--models.")
    return chosen


def default_datasets(table_number: str, profile: str) -> list[str]:
    exp = load_experiments()
    prof = profile_of(exp, profile)
    if prof.get("dataset"):
        return [prof["dataset"]]
    return list(table_of(exp, table_number)["datasets"])


def build_table(reg: Registry, number: str, profile: str, *, datasets: list[str] | None = None,
                protocol: str = "paper", rows: list[str] | None = None, overrides: dict | None = None,
                metrics: Sequence[str] | None = None, kernel_family: str | None = None,
                dci_estimator: str = "gbt") -> Table:
    exp = load_experiments()
    spec = table_of(exp, number)
    profile_of(exp, profile)
    datasets = datasets or default_datasets(number, profile)
    chosen = table_rows(spec, number, rows)
    rows = [(r["key"], r["label"]) for r in chosen]
    given = override_list(overrides or {})
    fill_set = "".join(f" --set {o}" for o in given)
    metrics = metrics if metrics else (spec.get("metrics") or None)
    columns, titles = table_columns(metrics, dci_estimator)
    base = columns[:len(COLUMNS)]  # the paper's columns, DCI's by the estimator
    cells: dict[tuple[str, str], Cell] = {}
    published_from: dict[str, str] = {}
    missing: list[str] = []
    lacking = False
    sources, candidates, n_left_out = Sources(reg), [], 0
    for ds in datasets:
        ref = ds if ds in spec.get("published", {}) else get_dataset_spec(ds).hyperparameters
        published_from[ds] = ref if ref in spec.get("published", {}) else ""
        runs = reg.find_runs(dataset=ds, profile=profile, status=FINISHED)
        stopped = reg.find_runs(dataset=ds, profile=profile, status=STOPPED)
        identity = dataset_identity(ds)
        for r in chosen:
            want = expected_setup(r["model"], ds, profile, r.get("set", {}), overrides)
            published = spec.get("published", {}).get(ref, {}).get(r["key"]) if dci_estimator == "gbt" else None
            cell = Cell(published=None if published is None else list(published) + [None] * (len(columns) - len(base)))
            values = []
            setup = cell_runs(runs, r["model"], want, identity)
            scored = [run for run in setup if all(c in reg.latest_metrics(run.id, protocol) for c in base)]
            lacking |= (waiting := dci_estimator != "gbt" and not scored and any(  # scored by gbt only
                all(c in reg.latest_metrics(run.id, protocol) for c in COLUMNS) for run in setup))
            candidates += scored
            kept = scored if kernel_family is None else sources.keep(scored, kernel_family)
            n_left_out += len(scored) - len(kept)
            cell.uncounted = left_out(setup, scored, kept, cell_runs(stopped, r["model"], want, identity))
            for run in one_per_seed(kept):
                m = reg.latest_metrics(run.id, protocol)
                cell.runs.append(run.short_id)
                values.append([m[c] * SCALE.get(c, 1.0) if c in m else None for c in columns])
                sources.load([run])
                cell.trained_on[run.short_id] = sources.trained[run.id]
                cell.scored_on[run.short_id] = sources.scored(run, protocol, columns)
            cell.values = values
            if values:
                cols = [[v for v in c if v is not None] for c in zip(*values, strict=True)]
                cell.counts = [len(c) for c in cols]
                cell.mean = [sum(c) / len(c) if c else None for c in cols]
                cell.std = [_std(tuple(c)) if c else None for c in cols]
                lacking = lacking or min(cell.counts) < cell.n
            elif not waiting:
                missing.append(f"fqvae reproduce --paper-table {number} --profile {profile} --datasets {ds} "
                               f"--rows {r['key']}{fill_set}")
            cells[(ds, r["key"])] = cell
    if lacking:
        names = ",".join(n for n in parse_metrics(metrics) if n not in DEFAULT_METRICS or dci_estimator != "gbt")
        estimator = f" --dci-estimator {dci_estimator}" if dci_estimator != "gbt" else ""
        missing.append(f"fqvae evaluate --all --protocol {protocol} --metrics {names}{estimator}")
    if kernel_family is not None:
        check_family(kernel_family, sources, candidates)
    best, undecided = _best(cells, datasets, [k for k, _ in rows], columns, titles)
    return Table(number, spec["title"], profile, protocol, datasets, rows, cells, published_from, missing, best,
                 undecided, given, columns, titles, sources.records, kernel_family, n_left_out, dci_estimator)


def override_list(overrides: dict, prefix: str = "") -> list[str]:
    """{'train': {'steps': 4}} -> ['train.steps=4']: nested --set overrides as they are typed."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            out += override_list(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={value}")
    return out


def _std(values: tuple[float, ...]) -> float:
    if len(values) < 2:
        return 0.0
    mu = sum(values) / len(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))


def _best(cells: dict, datasets: list[str], keys: list[str], columns: list[str],
          titles: list[str]) -> tuple[dict, dict[str, list[str]]]:
    """Per column, the best mean (highest; lowest for MSE) is marked only where it is told apart from the
    second best: both cells have n >= 2 seeds and the gap exceeds the sum of their standard deviations.
    Returns (marks, undecided): undecided[dataset] lists each unmarked column with the reason."""
    best: dict[tuple[str, str], set[int]] = {}
    undecided: dict[str, list[str]] = {}
    for ds in datasets:
        for j, col in enumerate(columns):
            ranked = sorted(((cells[(ds, k)].mean[j], k) for k in keys
                             if cells[(ds, k)].mean is not None and cells[(ds, k)].mean[j] is not None),
                            reverse=col != "mse")
            if len(ranked) < 2:
                continue
            (v1, k1), (v2, k2) = ranked[0], ranked[1]
            c1, c2 = cells[(ds, k1)], cells[(ds, k2)]
            title = titles[j]
            if c1.counts[j] < 2 or c2.counts[j] < 2:
                undecided.setdefault(ds, []).append(f"{title} (one seed: no spread to compare)")
            elif abs(v1 - v2) > c1.std[j] + c2.std[j]:
                best.setdefault((ds, k1), set()).add(j)
            else:
                undecided.setdefault(ds, []).append(f"{title} (best and second within their std)")
    return best, undecided


def undecided_lines(t: Table) -> list[str]:
    return [f"{ds}: no best marked for " + ", ".join(cols) + "." for ds, cols in t.undecided.items()]


def provenance_lines(t: Table) -> list[str]:
    """The footer saying where the cells' numbers came from and which cells mix (origins.footer_lines)."""
    labels = dict(t.rows)
    return footer_lines({f"{ds} / {labels[key]}": cell for (ds, key), cell in t.cells.items()}, t.provenance,
                        t.kernel_family, t.left_out)


def header_lines(t: Table) -> list[str]:
    lines = [t.title, f"profile: {t.profile}; metric protocol: {t.protocol}; cells: mean ± std over seeds (n seeds)"]
    for ds in t.datasets:
        src = t.published_from.get(ds)
        if src and src != ds:
            lines.append(f"{ds}: published values shown for comparison are the paper's {src} numbers "
                         f"(a different dataset); this column is NOT the paper's setting.")
    if t.profile != "paper":
        lines.append(f"These numbers come from the '{t.profile}' profile, not the paper's setup "
                     "(Appendix A.3 trunk, 100k iterations at batch 256).")
    if t.overrides:
        lines.append(f"Built with --set {', '.join(t.overrides)}: only runs trained with these settings fill the "
                     f"cells, not the '{t.profile}' profile's own setup.")
    extra = t.titles[len(COLUMNS):]
    if extra:
        lines.append(f"{', '.join(extra)}: not reported in the paper (no published values); a cell whose runs "
                     "do not all have one says how many seeds its mean covers.")
    return lines


def format_cell(t: Table, cell: Cell, j: int, marked: bool, *, bold: tuple[str, str]) -> str:
    dec = 1 if t.columns[j] == "mse" else 2
    published = None if cell.published is None else cell.published[j]
    if cell.mean is None or cell.mean[j] is None:
        return "—" if published is None else f"— ({published:.{dec}f})"
    text = f"{cell.mean[j]:.{dec}f}"
    if cell.counts[j] > 1:
        text += f"±{cell.std[j]:.{dec}f}"
    if marked:
        text = f"{bold[0]}{text}{bold[1]}"
    if cell.counts[j] < cell.n:
        text += f" [{cell.counts[j]} of {cell.n} seeds]"
    if published is not None:
        text += f" ({published:.{dec}f}, {cell.mean[j] - published:+.{dec}f})"
    return text


def to_records(t: Table) -> list[dict]:
    out = []
    for ds in t.datasets:
        for key, label in t.rows:
            c = t.cells[(ds, key)]
            rec = {"table": t.number, "profile": t.profile, "protocol": t.protocol, "dataset": ds, "row": key,
                   "label": label, "n_seeds": c.n, "runs": c.runs}
            for j, col in enumerate(t.columns):
                rec[col] = None if c.mean is None else c.mean[j]
                rec[f"{col}_std"] = None if c.std is None else c.std[j]
                rec[f"{col}_published"] = None if c.published is None else c.published[j]
            rec["kernel_families"] = cell_families(c, t.provenance)
            rec["not_counted"] = c.uncounted
            out.append(rec)
    return out


def render_text(t: Table, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"header": header_lines(t), "cells": to_records(t), "missing": t.missing,
                           "undecided": t.undecided, "provenance": provenance_lines(t),
                           "not_counted": uncounted_lines(t), "provenance_records": labelled(t.provenance)}, indent=2)
    if fmt == "csv":
        recs = to_records(t)
        buf = io.StringIO()
        # The numbers' columns as they always were; where they came from is in the JSON and the footers.
        fixed = ("runs", "kernel_families", "not_counted")
        w = csv.DictWriter(buf, fieldnames=[k for k in recs[0] if k not in fixed] + ["runs", "not_counted"],
                           extrasaction="ignore")
        w.writeheader()
        for r in recs:
            w.writerow({**r, "runs": " ".join(r["runs"]), "not_counted": note(r["not_counted"], t.protocol)})
        return buf.getvalue()
    if fmt == "markdown":
        return _markdown(t)
    if fmt == "latex":
        return _latex(t)
    raise ValueError(fmt)


def _markdown(t: Table) -> str:
    lines = [f"**{t.title}**", ""] + [f"_{h}_  " for h in header_lines(t)[1:]] + [""]
    lines.append("| model | n | " + " | ".join(t.titles) + " |")
    lines.append("|---|---|" + "---|" * len(t.columns))
    for ds in t.datasets:
        lines.append(f"| **{ds}** | | " + " | ".join("" for _ in t.columns) + " |")
        for key, label in t.rows:
            c = t.cells[(ds, key)]
            marks = t.best.get((ds, key), set())
            vals = [format_cell(t, c, j, j in marks, bold=("**", "**")) for j in range(len(t.columns))]
            lines.append(f"| {label} | {seeds_text(c)} | " + " | ".join(vals) + " |")
    lines += ["", "Each cell: ours (published, ours − published); bold = best in the column, beyond the "
              "spread of seeds (its mean minus the second best's exceeds the sum of their std, n >= 2 each)."]
    lines += [f"_{u}_  " for u in undecided_lines(t) + uncounted_lines(t)]
    lines += [f"_{p}_  " for p in provenance_lines(t)]
    return "\n".join(lines)


def _latex(t: Table) -> str:
    lines = [f"% {h}" for h in header_lines(t)]
    lines += [r"\begin{tabular}{l" + "c" * len(t.columns) + "}", r"\toprule",
              "model & " + " & ".join(t.titles).replace("×10⁴", r" $\times 10^4$") + r" \\", r"\midrule"]
    for ds in t.datasets:
        lines.append(rf"\multicolumn{{{len(t.columns) + 1}}}{{c}}{{{ds}}} \\")
        for key, label in t.rows:
            c = t.cells[(ds, key)]
            marks = t.best.get((ds, key), set())
            vals = [format_cell(t, c, j, j in marks, bold=(r"\textbf{", "}")).replace("±", r"$\pm$")
                    for j in range(len(t.columns))]
            lines.append(label.replace("β", r"$\beta$") + " & " + " & ".join(vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + [f"% {u}" for u in uncounted_lines(t)]
    lines += [f"% {p}" for p in provenance_lines(t)]
    return "\n".join(lines)
