"""One sampling run: seeds → initial noise → σ schedule → sampler → final latent.

The convention option selects whose behaviour a run reproduces — it changes data, not code paths:

================  ==========================================  =========================================
convention        "a1111" (A1111 / Forge, ``generate``)        "comfyui" (ComfyUI's KSampler)
================  ==========================================  =========================================
initial noise     per-image CPU generators, seed + i           one CPU randn(B, C, H, W) from the seed
x_T               σ_0·ε                                        sqrt(1 + σ_0²)·ε at full denoise
step noise        the per-image generators continue            one generator seeded with the seed
Brownian tree     one per image, seeded with its seed          one for the batch, seeded with the seed
================  ==========================================  =========================================

The matching σ → timestep rule (A1111: log-σ interpolation; ComfyUI: nearest table index) belongs to
the denoiser: build it on ``DiscreteSchedule(timestep_rule=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .events import EventHandler
from .names import resolve_sampler
from .noise import a1111_noise, comfy_noise, generator, image_seeds, resolve_seed
from .samplers import SamplerInfo
from .schedules import build_sigmas

CONVENTIONS = ("a1111", "comfyui")


@dataclass
class SampleResult:
    latents: Tensor  # [B, C, H, W] (or whatever shape the denoiser works on)
    sigmas: Tensor
    seeds: list[int]
    sampler: SamplerInfo
    schedule: str
    initial_noise: Tensor  # unit noise ε before the σ scaling
    options: dict[str, Any] = field(default_factory=dict)


def sample(
    denoiser,
    model_sigmas: Tensor,
    shape: Sequence[int],
    *,
    sampler: str = "Euler",
    schedule: str = "Automatic",
    steps: int = 20,
    seed: int = -1,
    batch_size: int = 1,
    subseed: int = 0,
    subseed_strength: float = 0.0,
    seed_resize_from: tuple[int, int] | None = None,
    eta_noise_seed_delta: int = 0,
    convention: str = "a1111",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    on_event: EventHandler | None = None,
    schedule_options: dict[str, Any] | None = None,
    **sampler_options: Any,
) -> SampleResult:
    """Sample ``batch_size`` latents of per-image ``shape`` from ``denoiser``.

    ``sampler`` may be any name users write (``"DPM++ 2M Karras"``, ``"dpmpp_2m"``); a schedule baked
    into the name wins over ``"Automatic"``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    info, named_schedule = resolve_sampler(sampler)
    if named_schedule is not None and schedule.casefold() == "automatic":
        schedule = named_schedule
    sigmas = build_sigmas(model_sigmas, steps, schedule, sampler=info, **(schedule_options or {}))
    seed = resolve_seed(seed)
    if convention == "a1111":
        seeds, subseeds = image_seeds(seed, batch_size, subseed, subseed_strength)
        made = a1111_noise(
            shape,
            seeds,
            subseeds=subseeds,
            subseed_strength=subseed_strength,
            seed_resize_from=seed_resize_from,
            eta_noise_seed_delta=eta_noise_seed_delta,
        )
        noise, gens = made.noise, made.generators
        if info.brownian:  # A1111 seeds the Brownian trees with the image seeds, untouched by ENSD
            gens = [generator(s) for s in seeds]
        scale = float(sigmas[0])
    else:
        seeds = [seed] * batch_size
        noise, gens = comfy_noise((batch_size, *shape), seed), generator(seed)
        scale = math.sqrt(1 + float(sigmas[0]) ** 2)
    x = (noise * scale).to(device=device, dtype=dtype)
    latents = info(denoiser, x, sigmas.to(device), generator=gens, on_event=on_event, **sampler_options)
    return SampleResult(latents, sigmas, seeds, info, schedule, noise, dict(sampler_options))
