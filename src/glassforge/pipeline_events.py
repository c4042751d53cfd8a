"""Typed events of the text-to-image pipeline around sampling.

The sampling core emits :mod:`glassforge.sampling.events` (a ``ModelCall`` and a ``Guidance`` per model
evaluation, a ``SamplerStep`` per step). ``txt2img`` adds what happens before and after, through the
same ``on_event`` callable:

1. :class:`PromptEncoded` — once per generation, before any sampling: both prompts' tokens and
   text embeddings.
2. for each batch (``batch_count`` of them): the sampling events, then :class:`Sampled` (the seeds,
   the unit noise the run started from, the σ schedule and its timesteps, the final latent) — it
   comes after the steps because the noise and the schedule are made inside ``sample()``; the first
   step's ``x`` is x_T = σ_0·ε — then :class:`Decoded` (the VAE's output).

Events are frozen dataclasses; ``txt2img`` builds them only when a listener is given, so plain
generation pays nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from .models.text_encoding import Conditioning

if TYPE_CHECKING:
    from .sampling.noise_schedule import DiscreteSchedule
    from .sampling.run import SampleResult


@dataclass(frozen=True)
class PromptEncoded:
    """The prompt and the negative prompt, tokenized and encoded (``cond.tokens`` per text encoder)."""

    cond: Conditioning
    uncond: Conditioning
    clip_skip: int


@dataclass(frozen=True)
class Sampled:
    """One sampling run (one batch of ``batch_size`` images) has finished."""

    batch: int  # index within batch_count
    seeds: tuple[int, ...]  # per image
    noise: Tensor  # [B, C, h, w] the unit Gaussian noise ε drawn from the seeds (before σ scaling)
    sigmas: Tensor  # [steps + 1] the σ schedule handed to the sampler (ends in 0)
    timesteps: Tensor  # [steps] t(σ_i) for each σ_i > 0: what the network is told as its time
    sampler: str  # display name
    schedule: str  # the schedule that made ``sigmas``
    latents: Tensor  # [B, C, h, w] the final latent x_0 (model space, i.e. scaled)

    @classmethod
    def of(cls, batch: int, result: SampleResult, schedule: DiscreteSchedule) -> Sampled:
        """From a :class:`~glassforge.sampling.run.SampleResult` and the model's discrete schedule."""
        timesteps = schedule.sigma_to_t(result.sigmas[result.sigmas > 0])
        return cls(batch, tuple(result.seeds), result.initial_noise, result.sigmas, timesteps,
                   result.sampler.name, result.schedule, result.latents)  # fmt: skip


@dataclass(frozen=True)
class Decoded:
    """The VAE turned one batch's final latents into pixels."""

    batch: int
    latents: Tensor  # what was decoded (scaled latents)
    scale_factor: float  # the decoder received latents / scale_factor
    pixels: Tensor  # [B, 3, H, W] decoder output in [−1, 1], before clamping and 8-bit conversion


PipelineEvent = PromptEncoded | Sampled | Decoded
