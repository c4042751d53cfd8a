"""Seeds and initial noise, with A1111's semantics (and ComfyUI's, selectable).

A1111 (``modules/rng.py``, ``processing.py``):

* seed −1 → a random seed in [0, 4294967294), reported back; image i of a run uses ``seed + i``
  (with a variation seed, all images share ``seed`` and use ``subseed + i``);
* one CPU ``torch.Generator`` per image seeded with its seed; the initial noise is that generator's
  first ``randn(C, H, W)``; ancestral/SDE step noise continues the same per-image streams, so image i of
  a batch is bit-identical to the same seed alone;
* variation seed: noise = slerp(strength, noise, randn(subseed)); "resize seed from" makes the noise
  at another size and pastes it centred into fresh full-size noise;
* ENSD (eta noise seed delta): after the initial noise, the generators restart at ``seed + ENSD``.

ComfyUI instead draws one ``randn(B, C, H, W)`` for the whole batch from the seed (``comfy_noise``).
The initial latent is the noise times σ_max (``x_T = σ_0·ε``), done by the caller.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_SEED = 4294967294  # A1111 draws random seeds in [0, 4294967294)


def resolve_seed(seed: int | None) -> int:
    """A1111: −1 or None → a fresh random seed (to be reported); other values pass through."""
    if seed is None or int(seed) == -1:
        return random.randrange(MAX_SEED)
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be −1 (random) or a non-negative integer, got {seed}")
    return seed


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def slerp(t: float, low: Tensor, high: Tensor) -> Tensor:
    """A1111's spherical interpolation of two per-image noise tensors [C, H, W].

    Vectors are taken along dim 1 (height) of the [C, H, W] tensor — one angle per (channel, column).
    If the vectors are nearly parallel (mean cosine > 0.9995) it falls back to ``low·t + high·(1 − t)``
    (A1111's weights, swapped as in its code).
    """
    low_n = low / low.norm(dim=1, keepdim=True)
    high_n = high / high.norm(dim=1, keepdim=True)
    dot = (low_n * high_n).sum(1)
    if dot.mean() > 0.9995:
        return low * t + high * (1 - t)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) / so).unsqueeze(1) * low + (torch.sin(t * omega) / so).unsqueeze(
        1
    ) * high


def _paste_centred(dst: Tensor, src: Tensor) -> Tensor:
    """Paste ``src`` [C, h, w] centred into ``dst`` [C, H, W]; a larger source is cropped centrally."""
    _, H, W = dst.shape
    _, h, w = src.shape
    dx, dy = (W - w) // 2, (H - h) // 2
    cw, ch = min(w, W), min(h, H)
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    out = dst.clone()
    out[:, ty : ty + ch, tx : tx + cw] = src[:, sy : sy + ch, sx : sx + cw]
    return out


@dataclass
class ImageNoise:
    """Initial noise for a batch plus the per-image generators the sampler continues from."""

    noise: Tensor  # [B, C, H, W], unit variance
    generators: list[torch.Generator]
    seeds: list[int]
    subseeds: list[int]


def image_seeds(seed: int, count: int, subseed: int = 0, subseed_strength: float = 0.0):
    """Per-image (seeds, subseeds) as A1111 assigns them."""
    if subseed_strength:
        return [seed] * count, [subseed + i for i in range(count)]
    return [seed + i for i in range(count)], [subseed + i for i in range(count)]


def a1111_noise(
    shape: Sequence[int],
    seeds: Sequence[int],
    *,
    subseeds: Sequence[int] | None = None,
    subseed_strength: float = 0.0,
    seed_resize_from: tuple[int, int] | None = None,
    eta_noise_seed_delta: int = 0,
    device: str | torch.device = "cpu",
    latent_factor: int = 8,
) -> ImageNoise:
    """Initial noise per image with per-image generators (A1111 ``ImageRNG``).

    ``shape`` is the per-image latent shape (C, H, W); ``seed_resize_from`` is (width, height) in pixels.
    """
    shape = tuple(int(s) for s in shape)
    subseeds = list(subseeds) if subseeds is not None else [0] * len(seeds)
    resize = seed_resize_from is not None and seed_resize_from[0] > 0 and seed_resize_from[1] > 0
    small = (
        (shape[0], seed_resize_from[1] // latent_factor, seed_resize_from[0] // latent_factor)
        if resize
        else shape
    )
    gens, xs = [], []
    for seed, subseed in zip(seeds, subseeds, strict=True):
        g = generator(seed, device)
        base = torch.randn(shape, generator=g, device=device)  # the per-image stream's first draw
        noise = torch.randn(small, generator=generator(seed, device), device=device) if resize else base
        if subseed_strength:
            subnoise = torch.randn(small, generator=generator(subseed, device), device=device)
            noise = slerp(subseed_strength, noise, subnoise)
        if resize:
            noise = _paste_centred(base, noise)
        xs.append(noise)
        gens.append(g)
    if eta_noise_seed_delta:
        gens = [generator(s + eta_noise_seed_delta, device) for s in seeds]
    return ImageNoise(torch.stack(xs), gens, list(seeds), subseeds)


def comfy_noise(shape: Sequence[int], seed: int) -> Tensor:
    """ComfyUI's initial noise: one CPU ``randn(B, C, H, W)`` after seeding with ``seed``."""
    return torch.randn(tuple(shape), generator=generator(seed, "cpu"))
