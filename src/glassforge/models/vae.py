"""Latents → pixels: the VAE decode, A1111's 8-bit conversion, and fast latent → RGB previews."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

# ComfyUI's latent → RGB factors (latent_formats.py), applied to the scaled latent, then (v + 1)/2.
LATENT_RGB = {
    "sd1": (
        [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        [0.1084, -0.0175, -0.0011],
    ),
}
LATENT_RGB["sd2"] = LATENT_RGB["sd1"]


def vae_factor(vae: nn.Module) -> int:
    """Pixels per latent cell: 2^(levels − 1) (8 for SD's 4-level VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def decode(vae: nn.Module, latents: Tensor, scale_factor: float, dtype: torch.dtype | None = None) -> Tensor:
    """Pixels in [−1, 1] (not clamped): ``vae.decode(latents / scale_factor)``, one image at a time."""
    dtype = dtype or next(vae.parameters()).dtype
    if next(vae.parameters()).dtype != dtype:
        nn.Module.to(vae, dtype)  # diffusers' own .to() warns about fp32 modules that an SD VAE does not have
    out = [vae.decode((z[None] / scale_factor).to(dtype)).sample.float() for z in latents]
    return torch.cat(out)


@torch.no_grad()
def encode(vae: nn.Module, pixels: Tensor, scale_factor: float) -> Tensor:
    """Latents (the posterior mean, deterministic) of pixels in [−1, 1], times the scale factor."""
    dtype = next(vae.parameters()).dtype
    return vae.encode(pixels.to(dtype)).latent_dist.mean.float() * scale_factor


def to_pil(pixels: Tensor) -> list[Image.Image]:
    """A1111's conversion: clamp((x + 1)/2, 0, 1)·255, truncated to uint8 (``astype(np.uint8)``)."""
    x = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0)
    arrays = (255.0 * x.permute(0, 2, 3, 1).cpu().numpy()).astype(np.uint8)
    return [Image.fromarray(a) for a in arrays]


def latent_preview(latents: Tensor, family: str) -> Tensor:
    """A cheap RGB picture of latents [B, 4, h, w] → [B, 3, h, w] in [0, 1] (no VAE)."""
    factors, bias = LATENT_RGB.get(family, LATENT_RGB["sd1"])
    f = torch.tensor(factors, dtype=torch.float32)
    rgb = (
        torch.einsum("bchw,cr->brhw", latents[:, :4].float().cpu(), f)
        + torch.tensor(bias)[None, :, None, None]
    )
    return ((rgb + 1) / 2).clamp(0, 1)
