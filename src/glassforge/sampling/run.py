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
    return sample_sigmas(
        denoiser,
        sigmas,
        shape,
        info,
        seed=seed,
        batch_size=batch_size,
        subseed=subseed,
        subseed_strength=subseed_strength,
        seed_resize_from=seed_resize_from,
        eta_noise_seed_delta=eta_noise_seed_delta,
        convention=convention,
        dtype=dtype,
        device=device,
        on_event=on_event,
        model_sigma_max=float(model_sigmas.max()),
        schedule=schedule,
        **sampler_options,
    )


def sample_sigmas(
    denoiser,
    sigmas: Tensor,
    shape: Sequence[int],
    info: SamplerInfo,
    *,
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
    latent_image: Tensor | None = None,
    add_noise: bool = True,
    model_sigma_max: float | None = None,
    schedule: str = "custom",
    **sampler_options: Any,
) -> SampleResult:
    """Sample over an explicit σ list with ``info`` (a registered sampler).

    ``latent_image`` (default zeros): the starting latent x0 the noise is added to (img2img, ComfyUI's
    partial denoise); ``add_noise=False`` starts from it as is (ComfyUI's KSamplerAdvanced). ComfyUI's
    convention scales the noise by sqrt(1 + σ_0²) only when σ_0 is the model's σ_max (``model_sigma_max``,
    "max denoise"), else by σ_0.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    seed = resolve_seed(seed)
    if len(sigmas) < 2:  # nothing to do (ComfyUI's denoise 0)
        latents = torch.zeros(batch_size, *shape) if latent_image is None else latent_image.clone()
        return SampleResult(latents.to(device=device, dtype=dtype), sigmas, [seed] * batch_size, info, schedule,
                            torch.zeros_like(latents), dict(sampler_options))  # fmt: skip
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
        sigma0 = float(sigmas[0])
        top = model_sigma_max if model_sigma_max is not None else sigma0
        full = math.isclose(top, sigma0, rel_tol=1e-5) or sigma0 > top
        scale = math.sqrt(1 + sigma0**2) if full else sigma0
    if not add_noise:
        noise = torch.zeros_like(noise)
    x = (noise * scale).to(device=device, dtype=dtype)
    if latent_image is not None:
        x = x + latent_image.to(device=device, dtype=dtype)
    latents = info(denoiser, x, sigmas.to(device), generator=gens, on_event=on_event, **sampler_options)
    return SampleResult(latents, sigmas, seeds, info, schedule, noise, dict(sampler_options))
