"""Tensors as pictures for the report: grey and diverging colour maps, PNG data URIs, x0 previews, the GIF."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def png_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def gif_uri(path: Path) -> str:
    return "data:image/gif;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _array(t: Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def grey(t: Tensor, scale: float) -> Image.Image:
    """A 2-D tensor as grey levels: −scale → black, 0 → mid grey, +scale → white."""
    a = np.clip((_array(t) / scale + 1) / 2, 0, 1)
    return Image.fromarray((a * 255 + 0.5).astype(np.uint8), "L")


def diverging(t: Tensor, scale: float) -> Image.Image:
    """A 2-D tensor in blue (negative) – white (0) – red (positive), saturating at ±scale."""
    a = np.clip(_array(t) / scale, -1, 1)[..., None]
    white = np.ones(3)
    red, blue = np.array([0.70, 0.09, 0.17]), np.array([0.13, 0.40, 0.67])
    rgb = np.where(a >= 0, white + (red - white) * a, white + (blue - white) * -a)
    return Image.fromarray((rgb * 255 + 0.5).astype(np.uint8), "RGB")


def enlarge(image: Image.Image, min_side: int = 96) -> Image.Image:
    """Nearest-neighbour enlargement by an integer factor so the shorter side is at least ``min_side``."""
    factor = max(1, -(-min_side // min(image.size)))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def channel_images(latent: Tensor, scale: float, min_side: int = 1) -> list[Image.Image]:
    """Each channel of a [C, h, w] latent as a grey picture (enlarged to ``min_side`` pixels)."""
    return [enlarge(grey(latent[c], scale), min_side) for c in range(latent.shape[0])]


def robust_scale(t: Tensor, q: float = 0.99) -> float:
    """A symmetric display range: the ``q`` quantile of |t| (at least 1e-6)."""
    flat = t.detach().abs().reshape(-1).float()
    if flat.numel() > 200_000:
        flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:200_000]]
    return max(float(torch.quantile(flat, q)), 1e-6)


class Previewer:
    """Latents → a picture of what they show: the model's VAE (``"vae"``) or the fast latent → RGB
    projection (``"rgb"``, ComfyUI's factors). ``"auto"`` picks the VAE when it is small (≤ 10M
    parameters: the embedded model, test models) and the projection for real SD VAEs."""

    VAE_LIMIT = 10_000_000

    def __init__(self, model, mode: str = "auto"):
        if mode not in ("auto", "vae", "rgb"):
            raise ValueError(f"unknown preview mode {mode!r}; expected auto, vae or rgb")
        if mode == "auto":
            small = sum(p.numel() for p in model.vae.parameters()) <= self.VAE_LIMIT
            mode = "vae" if small else "rgb"
        self.model, self.mode = model, mode
        self.factor = 2 ** (len(model.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def many(self, latents: Tensor, chunk: int = 16) -> list[Image.Image]:
        """Pictures of [N, C, h, w] latents; the VAE decodes ``chunk`` at a time (previews need no
        batch-size bit-identity, unlike the final image)."""
        from ..models.vae import to_pil

        if self.mode != "vae":
            return [self(z) for z in latents]
        vae = self.model.vae
        param = next(vae.parameters())
        out = []
        for start in range(0, latents.shape[0], chunk):
            z = latents[start : start + chunk].float() / self.model.vae_scale_factor
            out += to_pil(vae.decode(z.to(param.device, param.dtype)).sample.float())
        return out

    @torch.no_grad()
    def __call__(self, latent: Tensor) -> Image.Image:
        """One [C, h, w] latent (model space) → an RGB picture (VAE: the output size; RGB: the latent's)."""
        from ..models.vae import decode, latent_preview, to_pil

        z = latent[None].float()
        if self.mode == "vae":
            device = next(self.model.vae.parameters()).device
            return to_pil(decode(self.model.vae, z.to(device), self.model.vae_scale_factor))[0]
        rgb = latent_preview(z, self.model.family)[0]
        return Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8), "RGB")


def side_by_side(left: Image.Image, right: Image.Image, height: int = 256, gap: int = 8) -> Image.Image:
    def fit(im: Image.Image) -> Image.Image:
        w = max(1, round(im.width * height / im.height))
        return im.convert("RGB").resize((w, height), Image.NEAREST if im.height < height else Image.BILINEAR)

    a, b = fit(left), fit(right)
    canvas = Image.new("RGB", (a.width + gap + b.width, height), (255, 255, 255))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width + gap, 0))
    return canvas


def save_gif(frames: Sequence[Image.Image], path: Path, ms: int = 350, last_ms: int = 1500) -> Path:
    """An endlessly looping GIF; the last frame stays longer."""
    durations = [ms] * (len(frames) - 1) + [last_ms]
    frames[0].save(
        path, save_all=True, append_images=list(frames[1:]), duration=durations, loop=0, optimize=True
    )
    return path
