"""Latents → pixels: the VAE decode, A1111's 8-bit conversion, and fast latent → RGB previews."""

from __future__ import annotations

import math

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


# Tiled decoding: above AUTO_TILE_CELLS latent cells (SD's VAE: above 1024×1024 pixels) the decoder runs on
# overlapping tiles of at most TILE latent cells a side, OVERLAP cells shared between neighbours.
AUTO_TILE_CELLS = 128 * 128
TILE = 96
OVERLAP = 16


def decode_dtype(vae: nn.Module) -> torch.dtype:
    """The VAE's own dtype, except fp16 on the CPU (slow there; fp32 instead)."""
    param = next(vae.parameters())
    return torch.float32 if param.dtype == torch.float16 and param.device.type == "cpu" else param.dtype


@torch.no_grad()
def decode(
    vae: nn.Module,
    latents: Tensor,
    scale_factor: float,
    dtype: torch.dtype | None = None,
    *,
    tile: int | str | None = "auto",
    overlap: int = OVERLAP,
) -> Tensor:
    """Pixels in [−1, 1] (not clamped): ``vae.decode(latents / scale_factor)``, one image at a time, in
    ``dtype`` (default :func:`decode_dtype`).

    ``tile``: latent cells per tile side for a tiled decode, ``None`` for a whole decode, ``"auto"`` for
    tiles of ``TILE`` when an image has more than ``AUTO_TILE_CELLS`` latent cells. Tiled decoding bounds
    the decoder's memory (its activations grow with the pixel count); see :func:`decode_tiled`.
    """
    dtype = dtype or decode_dtype(vae)
    if next(vae.parameters()).dtype != dtype:
        nn.Module.to(vae, dtype)  # diffusers' own .to() warns about fp32 modules that an SD VAE does not have
    h, w = latents.shape[-2:]
    if tile == "auto":
        tile = TILE if h * w > AUTO_TILE_CELLS else None
    out = []
    for z in latents:
        z = (z[None] / scale_factor).to(dtype)
        if tile is not None and max(h, w) > tile:
            out.append(decode_tiled(vae, z, int(tile), overlap))
        else:
            out.append(vae.decode(z).sample.float())
    return torch.cat(out)


def _tile_starts(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Start offsets and the common size of the fewest tiles of at most ``tile`` cells that cover
    ``length`` cells with neighbours sharing at least ``overlap`` cells, spread evenly."""
    if length <= tile:
        return [0], length
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (n - 1) * overlap) / n)
    return [round(i * (length - size) / (n - 1)) for i in range(n)], size


def _axis_weights(starts: list[int], size: int, factor: int) -> list[Tensor]:
    """Per tile, a 1-D blending weight over its pixels: 1 inside, a linear cross-fade across each
    overlap with a neighbour that ignores the outer quarter of the overlap on either side (where a tile
    sees its own zero-padded border), so the tiles' weights sum to 1 at every pixel."""
    out = []
    for k, start in enumerate(starts):
        w = torch.ones(size * factor)
        if k > 0:
            shared = (starts[k - 1] + size - start) * factor
            w[:shared] = _ramp(shared)
        if k + 1 < len(starts):
            shared = (start + size - starts[k + 1]) * factor
            w[size * factor - shared :] *= 1 - _ramp(shared)
        out.append(w)
    return out


def _ramp(n: int) -> Tensor:
    margin = n // 4
    return ((torch.arange(n) + 0.5 - margin) / max(n - 2 * margin, 1)).clamp(0, 1)


@torch.no_grad()
def decode_tiled(vae: nn.Module, z: Tensor, tile: int, overlap: int = OVERLAP) -> Tensor:
    """Decode one unscaled latent [1, C, h, w] tile by tile: tiles of at most ``tile`` cells a side,
    neighbours sharing at least ``overlap`` cells, cross-faded over the shared pixels (see
    :func:`_axis_weights`). Each tile is decoded whole (its own GroupNorm statistics and mid-block
    attention), so the result differs slightly from a whole decode, smoothly: no seams."""
    if not 0 <= 3 * overlap <= tile:
        raise ValueError(f"tile overlap {overlap} must be between 0 and a third of the tile size {tile}")
    factor = vae_factor(vae)
    (h, w), channels = z.shape[-2:], vae.config.out_channels
    ys, hs = _tile_starts(h, tile, overlap)
    xs, ws = _tile_starts(w, tile, overlap)
    wy, wx = _axis_weights(ys, hs, factor), _axis_weights(xs, ws, factor)
    out = torch.zeros(1, channels, h * factor, w * factor)
    total = torch.zeros(h * factor, w * factor)  # 1 everywhere by construction; divided out for safety
    for y, weight_y in zip(ys, wy, strict=True):
        for x, weight_x in zip(xs, wx, strict=True):
            pixels = vae.decode(z[..., y : y + hs, x : x + ws]).sample.float().cpu()
            window = (slice(y * factor, (y + hs) * factor), slice(x * factor, (x + ws) * factor))
            weight = weight_y[:, None] * weight_x[None, :]
            out[(..., *window)] += pixels * weight
            total[window] += weight
    return (out / total).to(z.device)


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
