"""Prediction adapters: turn a raw discrete-time network into a denoiser D(x, σ).

The network sees c_in·x and a timestep t(σ), and predicts ε (SD1.x, SD2-base, SDXL) or v (SD2.x 768-v).
With σ_data = 1 (discrete SD models), in σ-space (x = x0 + σ·n):

* ε-prediction: c_skip = 1, c_out = −σ, c_in = 1/sqrt(σ² + 1) → D = x − σ·ε
* v-prediction: c_skip = 1/(σ² + 1), c_out = −σ/sqrt(σ² + 1), c_in = 1/sqrt(σ² + 1) → D = c_skip·x + c_out·v

``model(x_in, t, **cond)`` is any callable; ``cond`` tensors are batched along dim 0 like ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .events import EventHandler, ModelCall
from .noise_schedule import DiscreteSchedule

PREDICTIONS = ("eps", "v")


def scalings(sigma: Tensor, prediction: str, sigma_data: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in) for σ of shape [B], as in k-diffusion's external wrappers."""
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    if prediction == "eps":
        return torch.ones_like(sigma), -sigma, c_in
    if prediction == "v":
        c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
        c_out = -sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
        return c_skip, c_out, c_in
    raise ValueError(f"unknown prediction type {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


class PredictionDenoiser:
    """D(x, σ) from an ε- or v-predicting network trained on a discrete schedule."""

    def __init__(
        self,
        model: Callable[..., Tensor],
        schedule: DiscreteSchedule,
        prediction: str = "eps",
        *,
        on_event: EventHandler | None = None,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction type {prediction!r}; expected one of {', '.join(PREDICTIONS)}"
            )
        self.model, self.schedule, self.prediction, self.on_event = model, schedule, prediction, on_event

    @property
    def sigmas(self) -> Tensor:
        """The model's ascending σ table (what schedules are built from)."""
        return self.schedule.sigmas

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        sigma = sigma.to(x.dtype).reshape(-1)
        c_skip, c_out, c_in = (c.reshape(-1, *[1] * (x.ndim - 1)) for c in scalings(sigma, self.prediction))
        t = self.schedule.sigma_to_t(sigma).to(device=x.device, dtype=x.dtype)
        raw = self.model(x * c_in, t, **cond)
        denoised = c_skip * x + c_out * raw
        if self.on_event is not None:
            self.on_event(ModelCall(sigma, t, x, c_in.reshape(-1), raw, denoised, self.prediction))
        return denoised


def eps_from_denoised(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """ε̂ = (x − D)/σ, the noise a denoised estimate implies (σ of shape [B])."""
    return (x - denoised) / sigma.reshape(-1, *[1] * (x.ndim - 1))
