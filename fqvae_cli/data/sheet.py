"""Contact sheets: one row per factor, that factor stepped through its values while the others stay
fixed at one (seeded) combination. The quickest way to see what a dataset's factors do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fqvae_cli.errors import UsageError

LABEL_WIDTH = 120
PAD = 2


def sheet_codes(space, base: np.ndarray, max_columns: int) -> list[tuple[int, np.ndarray]]:
    """For each factor: (factor index, codes (k, F)) stepping it through up to max_columns values
    spread evenly over its range, the other factors at `base`."""
    rows = []
    for j, size in enumerate(space.sizes):
        steps = np.unique(np.linspace(0, size - 1, min(size, max_columns)).round().astype(np.int64))
        codes = np.repeat(base[None, :], len(steps), axis=0)
        codes[:, j] = steps
        rows.append((j, codes))
    return rows


def contact_sheet(ds, out: Path | str, *, seed: int = 0, max_columns: int = 15, scale: int | None = None) -> None:
    """Write the contact sheet of a prepared dataset as a PNG into `out` (the caller's temporary file:
    fqvae_cli.outputs.writing publishes it)."""
    if max_columns < 2:
        raise UsageError(f"a contact sheet needs at least 2 columns, got {max_columns}.")
    space = ds.space
    base = space.sample(1, seed)[0]
    rows = sheet_codes(space, base, max_columns)
    s = ds.image_size
    scale = scale or max(1, 64 // s)
    tile = s * scale
    n_cols = max(len(c) for _, c in rows)
    width = LABEL_WIDTH + n_cols * (tile + PAD) + PAD
    height = len(rows) * (tile + PAD) + PAD
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, (j, codes) in enumerate(rows):
        images = ds.images_at(space.ravel(codes))
        y = PAD + r * (tile + PAD)
        draw.text((6, y + tile // 2 - 12), space.names[j], fill=(0, 0, 0), font=font)
        draw.text((6, y + tile // 2 + 2), f"{space.sizes[j]} values", fill=(110, 110, 110), font=font)
        for c, img in enumerate(images):
            im = Image.fromarray(img)
            if scale != 1:
                im = im.resize((tile, tile), Image.Resampling.NEAREST)
            sheet.paste(im, (LABEL_WIDTH + PAD + c * (tile + PAD), y))
    sheet.save(out, format="PNG", optimize=True)
