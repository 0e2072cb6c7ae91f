"""The comparison figure: a paper table's cells as one picture. Per metric a panel, per model (in the
table's order, top to bottom) every seed as a dot, the mean with a bar of one standard deviation over
seeds, and the published value as a hollow diamond; one row of panels per dataset. Shapes and fills
tell the marks apart, so the figure reads in black and white; MSE goes on a log scale when our values
and the published ones lie decades apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli.errors import UsageError
from fqvae_cli.experiments import COLUMN_TITLES, COLUMNS
from fqvae_cli.figures.plots import pyplot, spans_decades
from fqvae_cli.metrics import DEFAULT_METRICS, METRICS

DEFAULT_PANELS = COLUMNS  # the paper's seven columns
LOWER_IS_BETTER = {"mse"}


def _normal(name: str) -> str:
    return name.strip().lower().replace("×10⁴", "").replace("-", "_")


def panel_keys(names: list[str] | None) -> tuple[list[str], list[str]]:
    """(column keys, extra metrics to build the table with) of --metrics names: a paper column by its
    title or key (D, InfoM, MSE, dci_d), or a column of another metric (mig, sap, modularity, ...)."""
    if not names:
        return list(DEFAULT_PANELS), []
    known = {_normal(k): k for k in COLUMNS} | {_normal(t): k for k, t in zip(COLUMNS, COLUMN_TITLES, strict=True)}
    owner = {}
    for metric in METRICS.values():
        if metric.name in DEFAULT_METRICS:
            continue
        for key, title in metric.columns.items():
            known.setdefault(_normal(key), key)
            known.setdefault(_normal(title), key)
            owner[key] = metric.name
    keys: list[str] = []
    for name in names:
        key = known.get(_normal(name))
        if key is None:
            raise UsageError(f"unknown metric '{name}' for --metrics; choose from: "
                             f"{', '.join(t.replace('×10⁴', '') for t in COLUMN_TITLES)}, "
                             f"{', '.join(k for k in owner)}.")
        if key not in keys:
            keys.append(key)
    return keys, sorted({owner[k] for k in keys if k in owner})


def _seed_offsets(n: int) -> np.ndarray:
    """Vertical offsets of n seed dots around their row, so equal values stay visible."""
    return np.zeros(1) if n <= 1 else np.linspace(-0.22, 0.22, n)


def compare_figure(t: Any, keys: list[str], out: Path, fmt: str) -> None:
    """Draw the cells of Table `t` for the columns `keys` into `out` (png, svg or pdf)."""
    plt = pyplot()
    fig = draw_compare(t, keys)
    fig.savefig(out, format=fmt)
    plt.close(fig)


def draw_compare(t: Any, keys: list[str]) -> Any:
    """The matplotlib figure: axes[dataset row, metric column], marks labelled 'each seed', 'mean ± std
    over seeds' and 'published'."""
    plt = pyplot()
    n_rows = len(t.rows)
    fig, axes = plt.subplots(len(t.datasets), len(keys), squeeze=False, sharey="row", dpi=110,
                             figsize=(1.6 + 2.5 * len(keys), (0.34 * n_rows + 1.0) * len(t.datasets) + 0.9))
    for r, ds in enumerate(t.datasets):
        for c, key in enumerate(keys):
            j = t.columns.index(key)
            ax = axes[r, c]
            drawn: list[np.ndarray] = []
            for y, (row, _) in enumerate(t.rows):
                cell = t.cells[(ds, row)]
                seeds = np.asarray([v[j] for v in cell.values if v[j] is not None], dtype=float)
                if seeds.size:
                    ax.scatter(seeds, y + _seed_offsets(seeds.size), s=14, marker="o", facecolor="0.55",
                               edgecolor="black", linewidth=0.4, zorder=3, label="each seed")
                    ax.errorbar(cell.mean[j], y, xerr=cell.std[j] or None, fmt="s", color="black", markersize=5,
                                capsize=3, elinewidth=1.2, zorder=4, label="mean ± std over seeds")
                    drawn.append(seeds)
                published = None if cell.published is None else cell.published[j]
                if published is not None:
                    ax.scatter([published], [y], s=46, marker="D", facecolor="none", edgecolor="black",
                               linewidth=1.1, zorder=5, label="published")
                    drawn.append(np.asarray([published], dtype=float))
            if key == "mse" and spans_decades(drawn):
                ax.set_xscale("log")
            arrow = "lower is better" if key in LOWER_IS_BETTER else "higher is better"
            title = t.titles[j] + (" (log)" if ax.get_xscale() == "log" else "")
            ax.set_title(f"{title}\n{arrow}", fontsize=8)
            labels = [label if t.cells[(ds, row)].n else f"{label} (no runs)" for row, label in t.rows]
            ax.set_yticks(range(n_rows), labels, fontsize=8)
            ax.set_ylim(n_rows - 0.5, -0.5)
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(axis="x", alpha=0.3, linestyle=":")
            for y in range(n_rows - 1):
                ax.axhline(y + 0.5, color="0.9", linewidth=0.6, zorder=0)
        source = t.published_from.get(ds)
        note = f" (published: the paper's {source})" if source and source != ds else ""
        axes[r, 0].set_ylabel(f"{ds}{note}", fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    for ax in axes.flat:  # the first panel may lack a kind of mark (no runs, no published value)
        h, n = ax.get_legend_handles_labels()
        handles, names = handles + h, names + n
    found = dict(zip(names, handles, strict=True))
    unique = {n: found[n] for n in ("each seed", "mean ± std over seeds", "published") if n in found}
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"{t.title}\nprofile {t.profile}, metric protocol {t.protocol}", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
