"""What every sampler shares: the registry entry, the noise sources and small formula helpers.

A sampler is a plain function with one signature::

    sampler(denoiser, x, sigmas, *, generator=None, on_event=None, **options) -> Tensor

* ``denoiser(x, sigma)`` returns the denoised estimate D(x, σ) ≈ E[x0 | x]; ``sigma`` is a tensor of
  shape ``[batch]``.
* ``x`` enters already scaled to ``sigmas[0]`` (x = x0 + σ·n, "σ-space").
* ``sigmas`` is a decreasing 1-D tensor, normally ending in 0.
* ``generator`` is one ``torch.Generator`` (one noise stream for the batch, as ComfyUI does), a list
  with one per image (A1111's per-image streams: image i of a batch equals the same seed alone), or
  None (the global RNG).
* ``on_event`` receives a :class:`~glassforge.sampling.events.SamplerStep` per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ..events import EventHandler, SamplerStep
from ..registry import Registry

Generators = torch.Generator | Sequence[torch.Generator] | None


class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor: ...


class SamplerFn(Protocol):
    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        *,
        generator: Generators = None,
        on_event: EventHandler | None = None,
        **options: Any,
    ) -> Tensor: ...


@dataclass(frozen=True)
class SamplerInfo:
    """A registered sampler: the function plus what users and the explainer need to know of it."""

    name: str  # A1111/Forge display label
    fn: SamplerFn
    description: str
    formula: str  # the update rule as text (Unicode math)
    reference: str  # one line: the paper (and where the algorithm is from)
    aliases: tuple[str, ...] = ()  # A1111 aliases and ComfyUI names
    default_schedule: str | None = None  # schedule used when the user picks "Automatic"
    defaults: Mapping[str, Any] = field(default_factory=dict)  # options fixed by this name
    second_order: bool = False  # two model calls per step
    discard_penultimate_sigma: bool = False  # build steps+1 sigmas, drop the second-to-last
    stochastic: bool = False  # injects fresh noise (A1111's uses_ensd)
    brownian: bool = False  # SDE noise from a Brownian tree seeded per image
    needs_uncond: bool = False  # CFG++: uses the unconditional prediction separately

    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        *,
        generator: Generators = None,
        on_event: EventHandler | None = None,
        **options: Any,
    ) -> Tensor:
        return self.fn(
            denoiser, x, sigmas, generator=generator, on_event=on_event, **{**self.defaults, **options}
        )


SAMPLERS: Registry[SamplerInfo] = Registry("sampler")


def register(fn: SamplerFn, name: str, **info: Any) -> SamplerInfo:
    """Register ``fn`` under display ``name`` (and ``aliases``); returns the entry."""
    return SAMPLERS.add(SamplerInfo(name=name, fn=fn, **info))


# ---------------------------------------------------------------- formula helpers


def to_d(x: Tensor, sigma: Tensor | float, denoised: Tensor) -> Tensor:
    """Probability-flow ODE derivative dx/dσ = (x − D(x, σ))/σ (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma


def churn(x, sigma, n, generator, s_churn, s_tmin, s_tmax, s_noise):
    """Karras et al.'s churn: raise σ to σ̂ = σ·(1 + γ) by adding noise; returns (x̂, σ̂, γ, z)."""
    gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (gamma + 1)
    if gamma <= 0:
        return x, sigma_hat, gamma, None
    noise = randn_like(x, generator)
    return x + noise * s_noise * math.sqrt(sigma_hat**2 - sigma**2), sigma_hat, gamma, noise


def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step σ_from → σ_to into a deterministic part to σ_down and fresh noise σ_up.

    σ_up = min(σ_to, η·sqrt(σ_to²·(σ_from² − σ_to²)/σ_from²)), σ_down = sqrt(σ_to² − σ_up²).
    """
    if not eta or sigma_to == 0:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2))
    sigma_down = math.sqrt(sigma_to**2 - sigma_up**2)
    return sigma_down, sigma_up


def batch_sigma(x: Tensor, sigma: float | Tensor) -> Tensor:
    """σ as the ``[batch]`` tensor denoisers take."""
    return torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)


def guided_and_uncond(
    denoiser: Denoiser, x: Tensor, sigma: Tensor, scale_factor: float = 1.0
) -> tuple[Tensor, Tensor]:
    """The guided and the unconditional denoised estimates, for CFG++ samplers.

    A denoiser that is a guider (it has ``guided_and_uncond``) gives both, with its CFG scale
    multiplied by ``scale_factor``. Any other denoiser has no separate unconditional branch: both
    estimates are its output.
    """
    method = getattr(denoiser, "guided_and_uncond", None)
    if method is None:
        d = denoiser(x, sigma)
        return d, d
    return method(x, sigma, scale_factor=scale_factor)


def emit_step(
    on_event: EventHandler | None,
    sampler: str,
    i: int,
    sigmas: Tensor,
    x: Tensor,
    x_next: Tensor,
    denoised: Tensor,
    formula: str,
    noise: Tensor | None = None,
    **terms: float,
) -> None:
    """Send a :class:`SamplerStep` to ``on_event`` (no-op without a listener)."""
    if on_event is None:
        return
    on_event(
        SamplerStep(
            sampler=sampler,
            i=i,
            total=len(sigmas) - 1,
            sigma=float(sigmas[i]),
            sigma_next=float(sigmas[i + 1]),
            x=x,
            x_next=x_next,
            denoised=denoised,
            formula=formula,
            terms={k: float(v) for k, v in terms.items()},
            noise=noise,
        )
    )


# ---------------------------------------------------------------- noise


def randn_like(x: Tensor, generator: Generators) -> Tensor:
    """Unit Gaussian noise shaped like ``x`` from ``generator`` (see the module doc for the forms)."""
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(
            f"got {len(generator)} generators for a batch of {x.shape[0]}; expected one per image"
        )
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype) for g in generator]
    ).to(x.device)


NoiseFn = Callable[[float, float], Tensor]


def step_noise(x: Tensor, generator: Generators) -> NoiseFn:
    """A noise source ``noise(σ, σ_next)`` drawing fresh unit noise from ``generator`` each call."""
    return lambda sigma, sigma_next: randn_like(x, generator)


def _seeds_of(generator: Generators, batch: int) -> list[int]:
    if generator is None:
        return [int(torch.randint(0, 2**63 - 1, ()).item())]
    if isinstance(generator, torch.Generator):
        return [generator.initial_seed()]
    return [g.initial_seed() for g in generator]


class BrownianNoise:
    """Brownian-tree noise: noise for [σ, σ'] is (W(σ') − W(σ))/sqrt(|σ' − σ|).

    One ``torchsde.BrownianTree`` per seed, its time variable σ itself, so the noise is deterministic
    for a seed and consistent across step counts (a finer schedule refines the same path). With a list
    of per-image generators, image i's tree is seeded with ``generator[i].initial_seed()`` (A1111's
    per-image seeds); with one generator, one tree for the whole batch (ComfyUI).
    """

    def __init__(self, x: Tensor, sigma_min: float, sigma_max: float, generator: Generators = None):
        import torchsde  # imported here: only SDE samplers need it

        self.t0, self.t1 = float(sigma_min), float(sigma_max)
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device
        seeds = _seeds_of(generator, x.shape[0])
        per_image = generator is not None and not isinstance(generator, torch.Generator)
        w0 = torch.zeros(x.shape[1:] if per_image else x.shape, dtype=torch.float64)
        self.per_image = per_image
        # the tree spans a little more than [σ_min, σ_max]: torchsde rounds its ends, queries must stay inside
        span = (self.t0 * (1 - 1e-4), self.t1 * (1 + 1e-4))
        self.trees = [
            torchsde.BrownianTree(span[0], w0, span[1], entropy=seed % 2**63, tol=1e-6) for seed in seeds
        ]

    def __call__(self, sigma: float, sigma_next: float) -> Tensor:
        lo, hi = sorted((float(sigma), float(sigma_next)))
        lo, hi = max(lo, self.t0), min(hi, self.t1)
        sign = 1.0 if float(sigma_next) > float(sigma) else -1.0
        ws = [tree(lo, hi) for tree in self.trees]
        w = torch.stack(ws) if self.per_image else ws[0]
        return (sign * w / math.sqrt(max(hi - lo, 1e-30))).to(self.device, self.dtype)


def brownian_noise(x: Tensor, sigmas: Tensor, generator: Generators) -> BrownianNoise:
    positive = sigmas[sigmas > 0]
    return BrownianNoise(x, float(positive.min()), float(sigmas.max()), generator)
