"""Matplotlib figures: factor x latent heatmaps (paper Figs. 5-7) and codebook usage (Fig. 9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib  # heavy: only drawing a figure needs matplotlib

    matplotlib.use("Agg")
    # Labels hold run names, metric names and titles that users typed: a `$` would start mathtext, and a
    # name such as `$\foo{$` would fail the whole figure. No figure of fqvae uses mathtext, so every text
    # is drawn as it is written (a `$` is a dollar sign).
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt  # heavy: as above; after use("Agg")

    return plt


def heatmap(matrix: np.ndarray, factor_names: list[str], out: Path, *, title: str, fmt: str = "png") -> None:
    """matrix: factors x latents, annotated with its values."""
    plt = pyplot()
    f, d = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * d + 2.2), max(2.5, 0.45 * f + 1.2)), dpi=100)
    im = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(1e-12, float(np.nanmax(matrix))), aspect="auto")
    ax.set_xticks(range(d), [f"z{i}" for i in range(d)], fontsize=8)
    ax.set_yticks(range(f), factor_names, fontsize=8)
    top = float(np.nanmax(matrix)) if matrix.size else 1.0
    for j in range(f):
        for i in range(d):
            v = matrix[j, i]
            ax.text(i, j, f"{v:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if v > 0.6 * top else "white")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(out, format=fmt)
    plt.close(fig)


def codebook_usage(indices: np.ndarray, latents: list[int], codebook_size: int, out: Path, *,
                   title: str, fmt: str = "png") -> np.ndarray:
    """Histogram of codebook indices per chosen latent; returns the counts (len(latents), K)."""
    plt = pyplot()
    counts = np.stack([np.bincount(indices[:, i], minlength=codebook_size) for i in latents])
    fig, axes = plt.subplots(len(latents), 1, figsize=(max(5.0, 0.12 * codebook_size + 1), 1.3 * len(latents) + 0.6),
                             dpi=100, sharex=True, squeeze=False)
    for ax, i, row in zip(axes[:, 0], latents, counts, strict=False):
        ax.bar(np.arange(codebook_size), row, color="tab:blue", width=0.85)
        ax.set_ylabel(f"z{i}", rotation=0, labelpad=14, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("codebook index", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, format=fmt)
    plt.close(fig)
    return counts
