"""Sweep grids: the first image of each run in a labelled grid (A1111's X/Y/Z plot layout).

The first axis runs along the columns, the second down the rows; a third stacks one such grid per value
top to bottom, each under a header band, so a sweep is always one picture. Small images are upscaled by a
whole factor (nearest neighbour: pixels stay pixels) to at least ``MIN_CELL`` px so the labels stay
legible beside them. PIL only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_AXES = 3  # columns, rows, blocks stacked top to bottom
MIN_CELL = 128  # grid cells are integer nearest-neighbour upscales at least this many pixels high and wide
FONT_SIZE = 16
PAD = 6  # around label text
GAP = 4  # between cells


def value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class GridLayout:
    """Where things go: cells ``cell`` px (the image × ``scale``), a column-label band ``top`` high, a
    row-label column ``left`` wide, and with a third axis a ``block_header`` band above each block."""

    cols: int
    rows: int
    blocks: int
    cell: tuple[int, int]
    scale: int
    left: int
    top: int
    block_header: int

    @property
    def block_height(self) -> int:
        return self.block_header + self.top + self.rows * (self.cell[1] + GAP)

    @property
    def size(self) -> tuple[int, int]:
        return self.left + self.cols * (self.cell[0] + GAP), self.blocks * self.block_height

    def box(self, col: int, row: int, block: int = 0) -> tuple[int, int, int, int]:
        x = self.left + col * (self.cell[0] + GAP)
        y = block * self.block_height + self.block_header + self.top + row * (self.cell[1] + GAP)
        return x, y, x + self.cell[0], y + self.cell[1]


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` px; a word too long for a line is broken by characters."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
            continue
        while font.getlength(word) > width and len(word) > 1:
            cut = max(i for i in range(1, len(word) + 1) if font.getlength(word[:i]) <= width or i == 1)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines or [""]


def make_grid(cells: dict[tuple, Any], axes: list[tuple[str, list]]) -> tuple[Any, GridLayout]:
    """(grid image, its layout) of ``cells`` (value-index tuple → PIL image) over ``axes`` ((title,
    values) each): axis 1 = columns, 2 = rows, 3 = blocks stacked top to bottom; cell (c, r, b) is at
    ``layout.box(c, r, b)``. Missing cells stay white. Labels read "title: value"."""
    import math

    from PIL import Image, ImageDraw

    first = next(iter(cells.values()))
    w, h = first.size
    scale = max(1, math.ceil(MIN_CELL / min(w, h)))
    cell = (w * scale, h * scale)
    values = [vals for _, vals in axes] + [[None]] * (MAX_AXES - len(axes))
    labels = [[f"{name}: {value_text(v)}" for v in vals] for name, vals in axes]
    font = _font()
    line_h = sum(font.getmetrics()) + 2
    col_lines = [_wrap(t, font, cell[0] - 2 * PAD) for t in labels[0]]
    top = max(len(lines) for lines in col_lines) * line_h + 2 * PAD
    left, row_lines = GAP, []
    if len(axes) > 1:
        widest = max(font.getlength(t) for t in labels[1]) + 2 * PAD
        left = int(min(widest, max(cell[0], 200))) + GAP
        row_lines = [_wrap(t, font, left - GAP - 2 * PAD) for t in labels[1]]
    header = line_h + 2 * PAD if len(axes) > 2 else 0
    layout = GridLayout(len(values[0]), len(values[1]), len(values[2]), cell, scale, left, top, header)
    grid = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(grid)
    for b in range(layout.blocks):
        y0 = b * layout.block_height
        if header:
            draw.text((PAD, y0 + PAD), labels[2][b], fill="black", font=font)
        for c, lines in enumerate(col_lines):
            x0 = layout.box(c, 0, b)[0]
            for i, line in enumerate(lines):
                x = x0 + (cell[0] - font.getlength(line)) / 2
                draw.text((x, y0 + header + PAD + i * line_h), line, fill="black", font=font)
        for r, lines in enumerate(row_lines):
            _, y, _, _ = layout.box(0, r, b)
            y += (cell[1] - len(lines) * line_h) / 2
            for i, line in enumerate(lines):
                draw.text((PAD, y + i * line_h), line, fill="black", font=font)
        for r in range(layout.rows):
            for c in range(layout.cols):
                key = (c, r, b)[: len(axes)]
                if key in cells:
                    image = cells[key].resize(cell, Image.Resampling.NEAREST)
                    grid.paste(image, layout.box(c, r, b)[:2])
    return grid, layout
