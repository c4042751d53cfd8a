"""Typed events emitted while sampling.

Every model call and every sampler step can be observed by passing an ``on_event`` callable. The
events are frozen dataclasses; nothing is built when nobody listens (each emitter checks
``on_event is not None`` first), so plain generation pays nothing for them.

Event order during a run: for each sampler step, the model calls it makes (``ModelCall`` from the
prediction adapter, then ``Guidance`` from the CFG wrapper, if any), then one ``SamplerStep``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class ModelCall:
    """One evaluation of the network through a prediction adapter (ε or v → denoised x0)."""

    sigma: Tensor  # [B] noise level of each batch row
    timestep: Tensor  # [B] what the network saw as its time input
    x: Tensor  # input latent in σ-space (x0 + σ·n), before c_in scaling
    c_in: Tensor  # [B] input scaling 1/sqrt(σ² + σ_data²)
    raw: Tensor  # the network's raw output (ε or v, per ``prediction``)
    denoised: Tensor  # D(x, σ) = c_skip·x + c_out·raw
    prediction: str  # "eps" or "v"


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance applied to one batched cond+uncond model call."""

    sigma: Tensor  # [B]
    cond: Tensor  # denoised estimate under the prompt
    uncond: Tensor | None  # denoised estimate under the negative prompt (None when CFG = 1 skips it)
    guided: Tensor  # uncond + scale·(cond − uncond), after any rescale
    scale: float
    rescale: float = 0.0  # CFG rescale φ (0 = off)


@dataclass(frozen=True)
class SamplerStep:
    """One step of a sampler: from ``x`` at ``sigma`` to ``x_next`` at ``sigma_next``."""

    sampler: str  # function name of the sampler (e.g. "euler")
    i: int  # step index, 0-based
    total: int  # number of steps in the schedule
    sigma: float
    sigma_next: float
    x: Tensor  # state before the step
    x_next: Tensor  # state after the step
    denoised: Tensor  # the denoised estimate D used by the update
    formula: str  # the update formula as text
    terms: Mapping[str, float] = field(default_factory=dict)  # scalar terms of this step's update
    noise: Tensor | None = None  # unit noise z injected by this step (before its σ scaling), if any


Event = ModelCall | Guidance | SamplerStep
EventHandler = Callable[[Event], None]
