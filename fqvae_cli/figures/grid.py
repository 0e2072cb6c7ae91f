"""Image grids with labelled rows and columns, drawn with PIL so the pixel layout is exact:
a left label column, a header row, then rows x cols tiles of (scale * image size) pixels, each tile
followed by `pad` pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

PAD = 2
HEADER = 14
LABEL_W = 96


@dataclass(frozen=True)
class GridLayout:
    rows: int
    cols: int
    tile: int  # tile side in pixels
    label_w: int = LABEL_W
    header: int = HEADER
    pad: int = PAD

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.label_w + self.cols * (self.tile + self.pad) + self.pad,
                self.header + self.rows * (self.tile + self.pad) + self.pad)

    def origin(self, r: int, c: int) -> tuple[int, int]:
        return (self.label_w + self.pad + c * (self.tile + self.pad),
                self.header + self.pad + r * (self.tile + self.pad))


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Model-scale images (..., 3, H, W) in [-0.5, 0.5] -> uint8 (..., H, W, 3), clipped."""
    x = np.moveaxis(np.asarray(x, dtype=np.float32), -3, -1)
    return np.clip(np.rint((x + 0.5) * 255.0), 0, 255).astype(np.uint8)


def draw_grid(tiles: np.ndarray, row_labels: list[str], col_labels: list[str], *, scale: int = 2):
    """tiles: uint8 (rows, cols, H, W, 3) -> PIL.Image with labels."""
    rows, cols, h, w, _ = tiles.shape
    layout = GridLayout(rows, cols, h * scale)
    img = Image.new("RGB", layout.size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for c, text in enumerate(col_labels):
        x, _ = layout.origin(0, c)
        draw.text((x + 1, 1), text, fill=(0, 0, 0))
    for r in range(rows):
        _, y = layout.origin(r, 0)
        if r < len(row_labels):
            draw.text((2, y + layout.tile // 2 - 5), row_labels[r], fill=(0, 0, 0))
        for c in range(cols):
            tile = Image.fromarray(tiles[r, c]).resize((w * scale, h * scale), Image.NEAREST)
            img.paste(tile, layout.origin(r, c))
    return img, layout
