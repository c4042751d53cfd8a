"""Loss-curve PNGs and captioned sample grids for training runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def loss_curve(losses: dict[str, list[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = [(name, v) for name, v in losses.items() if v]
    fig, axes = plt.subplots(1, max(1, len(phases)), figsize=(5 * max(1, len(phases)), 3.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], phases, strict=False):
        v = np.asarray(values)
        ax.plot(v, lw=0.5, alpha=0.4, label="per step")
        if len(v) >= 10:
            w = max(5, len(v) // 50)
            smooth = np.convolve(v, np.ones(w) / w, mode="valid")
            ax.plot(np.arange(w - 1, len(v)), smooth, lw=1.5, label=f"mean of {w}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title({"vae": "VAE reconstruction MSE", "unet": "diffusion loss ‖ε − ε_θ‖²"}.get(name, name))
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_grid(images, captions: list[str], path: Path, columns: int = 4, scale: int = 4) -> Path:
    """Images (uint8 [N, H, W, 3]) enlarged ``scale``× (nearest), each with its caption underneath."""
    from PIL import Image, ImageDraw

    images = np.asarray(images)
    n, h, w = images.shape[:3]
    cw, ch, text_h = w * scale, h * scale, 30
    rows = -(-n // columns)
    sheet = Image.new("RGB", (columns * (cw + 6), rows * (ch + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x, y = (i % columns) * (cw + 6), (i // columns) * (ch + text_h)
        sheet.paste(Image.fromarray(images[i]).resize((cw, ch), Image.Resampling.NEAREST), (x, y))
        lines = textwrap.wrap(captions[i], width=max(10, cw // 6))[:2]
        draw.multiline_text((x + 1, y + ch + 2), "\n".join(lines), fill=(0, 0, 0), spacing=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
