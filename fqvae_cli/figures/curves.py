"""Training curves from registry metric rows: one panel per metric, several runs overlaid and labelled,
optional smoothing, and a log scale for losses that span decades."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fqvae_cli.figures.plots import pyplot


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (window <= 1: unchanged); the first points average what exists."""
    if window <= 1 or len(values) == 0:
        return values
    csum = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def spans_decades(values: list[np.ndarray]) -> bool:
    """Positive values whose range covers at least two orders of magnitude."""
    v = np.concatenate([a[np.isfinite(a)] for a in values]) if values else np.array([])
    return bool(v.size) and bool((v > 0).all()) and v.max() / v.min() >= 100.0


def training_curves(series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], out: Path, *, fmt: str,
                    window: int = 1, log: str = "auto", title: str = "") -> list[str]:
    """series: metric -> run label -> (steps, values). Draws one panel per metric into `out`; returns the
    metrics drawn on a log scale."""
    plt = pyplot()
    metrics = list(series)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(6.4, 2.2 * len(metrics) + 0.6), dpi=100, squeeze=False,
                             sharex=True)
    logged = []
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        runs = series[metric]
        for label, (steps, values) in runs.items():
            ax.plot(steps, smooth(values, window), label=label, linewidth=1.2)
        if log == "on" or (log == "auto" and spans_decades([v for _, v in runs.values()])):
            ax.set_yscale("log")
            logged.append(metric)
        ax.set_ylabel(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("iteration", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, format=fmt)
    plt.close(fig)
    return logged
