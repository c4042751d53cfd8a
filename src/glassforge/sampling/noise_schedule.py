"""Discrete DDPM noise schedules and the σ ↔ timestep conversions.

A model trained with T discrete timesteps has a table of noise levels σ_t = sqrt((1 − ᾱ_t)/ᾱ_t),
t = 0 … T−1, ascending. Samplers work in σ; the network wants a timestep. Two conversions exist:

* ``"interp"`` (k-diffusion / A1111): a fractional t from linear interpolation of log σ between the
  neighbouring table entries.
* ``"nearest"`` (ComfyUI / Forge 2): the index of the table entry nearest in log σ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

BETA_SCHEDULES = ("scaled_linear", "linear", "cosine")
TIMESTEP_RULES = ("interp", "nearest")

# ComfyUI and A1111 clamp the last ᾱ of a zero-terminal-SNR schedule to this value so σ_max stays finite.
ZERO_SNR_LAST_ALPHA_CUMPROD = 4.8973451890853435e-08


def make_betas(
    kind: str = "scaled_linear",
    timesteps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    cosine_s: float = 8e-3,
) -> Tensor:
    """Betas in float64. ``scaled_linear`` is Stable Diffusion's (linspace of square roots, squared)."""
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if kind == "cosine":
        # Nichol & Dhariwal (2021): ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2), betas clipped at 0.999.
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + cosine_s
        f = torch.cos(steps / (1 + cosine_s) * math.pi / 2) ** 2
        alphas_cumprod = f / f[0]
        return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; expected one of {', '.join(BETA_SCHEDULES)}")


def rescale_zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """Lin et al. (2024), "Common Diffusion Noise Schedules and Sample Steps are Flawed", Alg. 1.

    Shifts and scales sqrt(ᾱ) so that the last timestep has zero SNR; the last ᾱ is then clamped to
    a tiny positive value (as A1111 and ComfyUI do) so that σ_max stays finite.
    """
    sqrt_ac = alphas_cumprod.double().sqrt()
    first, last = sqrt_ac[0].clone(), sqrt_ac[-1].clone()
    sqrt_ac = (sqrt_ac - last) * first / (first - last)
    out = sqrt_ac**2
    out[-1] = ZERO_SNR_LAST_ALPHA_CUMPROD
    return out


def sigma_to_t(model_sigmas: Tensor, sigma: Tensor | float, rule: str = "interp") -> Tensor:
    """Timestep(s) for noise level(s) ``sigma`` given the ascending table ``model_sigmas``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    log_sigmas = model_sigmas.double().log()
    log_sigma = sigma.clamp(min=torch.finfo(torch.float64).tiny).log()
    dists = log_sigma.unsqueeze(-1) - log_sigmas  # [..., T]
    if rule == "nearest":
        return dists.abs().argmin(dim=-1).to(torch.float64)
    if rule != "interp":
        raise ValueError(f"unknown timestep rule {rule!r}; expected one of {', '.join(TIMESTEP_RULES)}")
    # index of the last table entry with log σ_t <= log σ, kept inside [0, T−2]
    low = (dists >= 0).cumsum(dim=-1).argmax(dim=-1).clamp(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high])).clamp(0, 1)
    return (1 - w) * low + w * high


def t_to_sigma(model_sigmas: Tensor, t: Tensor | float) -> Tensor:
    """Noise level(s) at fractional timestep(s) ``t`` by log-linear interpolation of the table."""
    t = torch.as_tensor(t, dtype=torch.float64)
    log_sigmas = model_sigmas.double().log()
    low = t.floor().long().clamp(0, log_sigmas.shape[0] - 1)
    high = t.ceil().long().clamp(0, log_sigmas.shape[0] - 1)
    w = t - t.floor()
    return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()


@dataclass(frozen=True)
class DiscreteSchedule:
    """The noise schedule a discrete-time model was trained with.

    ``alphas_cumprod`` is float64; ``sigmas`` (ascending, float32 as ComfyUI/Forge store it) is the
    table that sigma schedules and σ→timestep conversion use.
    """

    betas: Tensor
    alphas_cumprod: Tensor
    sigmas: Tensor
    timestep_rule: str = "interp"

    @classmethod
    def from_betas(
        cls,
        kind: str = "scaled_linear",
        timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        zero_terminal_snr: bool = False,
        timestep_rule: str = "interp",
    ) -> DiscreteSchedule:
        if timestep_rule not in TIMESTEP_RULES:
            raise ValueError(
                f"unknown timestep rule {timestep_rule!r}; expected one of {', '.join(TIMESTEP_RULES)}"
            )
        betas = make_betas(kind, timesteps, beta_start, beta_end)
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        if zero_terminal_snr:
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()
        return cls(betas=betas, alphas_cumprod=alphas_cumprod, sigmas=sigmas, timestep_rule=timestep_rule)

    @classmethod
    def stable_diffusion(cls, **options) -> DiscreteSchedule:
        """SD1.x / SD2.x / SDXL: scaled_linear betas 0.00085 → 0.012 over 1000 steps."""
        return cls.from_betas("scaled_linear", 1000, 0.00085, 0.012, **options)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: Tensor | float, rule: str | None = None) -> Tensor:
        return sigma_to_t(self.sigmas, sigma, rule or self.timestep_rule)

    def t_to_sigma(self, t: Tensor | float) -> Tensor:
        return t_to_sigma(self.sigmas, t)

    def with_timestep_rule(self, rule: str) -> DiscreteSchedule:
        return DiscreteSchedule(self.betas, self.alphas_cumprod, self.sigmas, rule)
