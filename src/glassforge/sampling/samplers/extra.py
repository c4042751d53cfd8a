"""ComfyUI's extra singlestep exponential integrators in data prediction: SEEDS-2/3 and exponential Heun.

All integrate the (SDE-)DPM-Solver++ form over λ = −ln σ with a noise strength η,

    dx/dλ = (1 + η)·(D(x, λ) − x) + noise,   x(λ + ρh) = (σ_ρ/σ)·e^{−ηρh}·x + ∫ (1 + η)·e^{−(1+η)(λ+ρh−u)}·D(u) du
                                                       + σ_ρ·sqrt(1 − e^{−2ηρh})·ξ_ρ,

with D interpolated from the stage estimates. The noise of the later stages continues the earlier one
(ξ_b = e^{−η(ρ_b−ρ_a)h}·ξ_a + sqrt(1 − e^{−2η(ρ_b−ρ_a)h})·ξ_new), as one Brownian path through the step.
η = 0 gives the deterministic DPM-Solver++ singlestep methods.
"""

from __future__ import annotations

import math

from ._common import batch_sigma, emit_step, register, step_noise
from .multistep import phi

SEEDS_FORMULA = (
    "h = ln(σ_i/σ_{i+1}), h_η = (1 + η)·h, σ_ρ = σ_i·e^{−ρh};  stage ρ: x_ρ = (σ_ρ/σ_i)·e^{−ηρh}·x_i"
    " + (1 − e^{−ρh_η})·D_i + [ρh_η·φ₂(−ρh_η)·(ρ/r_prev)·(D_prev − D_i)] + σ_ρ·sqrt(1 − e^{−2ηρh})·ξ_ρ"
)


class _StageNoise:
    """Noise of one step's stages as one path: ξ at stage ρ has variance 1 − e^{−2ηρh}."""

    def __init__(self, noise_fn, eta: float, h: float, sigma: float):
        self.noise_fn, self.eta, self.h, self.sigma = noise_fn, eta, h, sigma
        self.acc, self.rho, self.sigma_at = None, 0.0, sigma

    def at(self, rho: float):
        if not self.eta:
            return None
        sigma_rho = self.sigma * math.exp(-rho * self.h)
        decay = math.exp(-self.eta * (rho - self.rho) * self.h)
        fresh = self.noise_fn(self.sigma_at, sigma_rho) * math.sqrt(
            -math.expm1(-2 * self.eta * (rho - self.rho) * self.h)
        )
        self.acc = fresh if self.acc is None else decay * self.acc + fresh
        self.rho, self.sigma_at = rho, sigma_rho
        return self.acc


def _linear(x, denoised, rho: float, h: float, eta: float):
    """(σ_ρ/σ)·e^{−ηρh}·x + (1 − e^{−ρh_η})·D: the stage value with D held constant."""
    return math.exp(-(1 + eta) * rho * h) * x - math.expm1(-(1 + eta) * rho * h) * denoised


def _seeds(denoiser, x, sigmas, generator, on_event, name, stages, solver_type, eta, s_noise):
    """One step = stage estimates at fractions ``stages`` of h, then the final combination (see module doc)."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        if sigma_next == 0:
            emit_step(on_event, name, i, sigmas, x, denoised, denoised, SEEDS_FORMULA)
            x = denoised
            continue
        h = math.log(sigma / sigma_next)
        h_eta = (1 + eta) * h
        noise = _StageNoise(noise_fn, eta, h, sigma)
        prev_rho, prev_denoised = None, None
        terms = {"h": h, "eta": eta}
        for k, rho in enumerate(stages):
            sigma_rho = sigma * math.exp(-rho * h)
            stage = _linear(x, denoised, rho, h, eta)
            if prev_rho is not None:
                stage = stage + rho * h_eta * phi(2, -rho * h_eta) * (rho / prev_rho) * (
                    prev_denoised - denoised
                )
            acc = noise.at(rho)
            if acc is not None:
                stage = stage + sigma_rho * s_noise * acc
            prev_rho, prev_denoised = rho, denoiser(stage, batch_sigma(x, sigma_rho))
            terms[f"sigma_s{k + 1}"] = sigma_rho
        x_next = _linear(x, denoised, 1.0, h, eta)
        if solver_type == "phi_1":  # midpoint form: (1 − e^{−h_η})·(D + (D_r − D)/(2r))
            x_next = x_next - math.expm1(-h_eta) / (2 * prev_rho) * (prev_denoised - denoised)
        else:  # phi_2: the exact integral of the linear interpolant
            x_next = x_next + h_eta * phi(2, -h_eta) / prev_rho * (prev_denoised - denoised)
        acc, unit = noise.at(1.0), None
        if acc is not None:
            x_next = x_next + sigma_next * s_noise * acc
            unit = acc / math.sqrt(-math.expm1(-2 * eta * h))
        emit_step(on_event, name, i, sigmas, x, x_next, denoised, SEEDS_FORMULA, unit, **terms)
        x = x_next
    return x


def sample_seeds_2(
    denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0, r=0.5, solver_type="phi_1"
):
    """SEEDS-2: two-stage stochastic exponential solver (Gonzalez et al. 2023, arXiv 2305.14267)."""
    if solver_type not in ("phi_1", "phi_2"):
        raise ValueError(f"unknown solver_type {solver_type!r}; expected phi_1 or phi_2")
    return _seeds(denoiser, x, sigmas, generator, on_event, "seeds_2", (r,), solver_type, eta, s_noise)


def sample_seeds_3(
    denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0, r_1=1 / 3, r_2=2 / 3
):
    """SEEDS-3: three-stage stochastic exponential solver (Gonzalez et al. 2023; DPM-Solver-3 stages)."""
    return _seeds(denoiser, x, sigmas, generator, on_event, "seeds_3", (r_1, r_2), "phi_2", eta, s_noise)


def sample_exp_heun_2_x0(denoiser, x, sigmas, *, generator=None, on_event=None, eta=0.0, s_noise=1.0):
    """Exponential Heun in data prediction: stage at σ_{i+1}, exact integral of the linear D (SEEDS-2, r = 1)."""
    return _seeds(denoiser, x, sigmas, generator, on_event, "exp_heun_2_x0", (1.0,), "phi_2", eta, s_noise)


def sample_exp_heun_2_x0_sde(denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0):
    """Stochastic exponential Heun in data prediction (SEEDS-2 with r = 1, η = 1)."""
    return _seeds(
        denoiser, x, sigmas, generator, on_event, "exp_heun_2_x0_sde", (1.0,), "phi_2", eta, s_noise
    )


SEEDS_REFERENCE = (
    "Gonzalez, Fischer, Zhao, Moon, Nejadgholi & Cheung 2023, SEEDS: Exponential SDE Solvers for Fast "
    "High-Quality Sampling from Diffusion Models (NeurIPS), arXiv 2305.14267"
)
register(
    sample_seeds_2,
    "seeds_2",
    description="SEEDS-2 (ComfyUI name): stage at λ + h/2, then the midpoint combination, with η = 1 noise "
    "continued across the stages. Two model calls per step; η = 0 is DPM-Solver++(2S).",
    formula=SEEDS_FORMULA,
    reference=SEEDS_REFERENCE,
    second_order=True,
    stochastic=True,
)
register(
    sample_seeds_3,
    "seeds_3",
    description="SEEDS-3 (ComfyUI name): stages at λ + h/3 and λ + 2h/3 (three model calls per step), "
    "η = 1; η = 0 is the third-order DPM-Solver++(3S).",
    formula=SEEDS_FORMULA,
    reference=SEEDS_REFERENCE + "; Lu et al. 2022 (DPM-Solver-3 stages)",
    second_order=True,
    stochastic=True,
)
register(
    sample_exp_heun_2_x0,
    "exp_heun_2_x0",
    description="Exponential Heun in data prediction (ComfyUI name): a DDIM step to σ_{i+1}, D there, then the "
    "exact integral of D interpolated linearly in λ. Deterministic, two model calls per step.",
    formula=SEEDS_FORMULA,
    reference=SEEDS_REFERENCE + " (SEEDS-2 with r = 1)",
    second_order=True,
)
register(
    sample_exp_heun_2_x0_sde,
    "exp_heun_2_x0_sde",
    description="Stochastic exponential Heun in data prediction (ComfyUI name), η = 1.",
    formula=SEEDS_FORMULA,
    reference=SEEDS_REFERENCE + " (SEEDS-2 with r = 1)",
    second_order=True,
    stochastic=True,
)
