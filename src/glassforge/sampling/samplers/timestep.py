"""Samplers born on the discrete DDPM timestep grid — DDIM, PLMS, UniPC, LCM, DDPM — written in σ-space.

A1111's DDIM/PLMS/UniPC run on their own timestep grid (t = 1, 1 + 1000//steps, …) from VP-space unit
noise, and stop at t = 1. Here the same algorithms run over any σ schedule (x = x0 + σ·n, the VP state is
x/sqrt(1 + σ²), ᾱ = 1/(1 + σ²)), with the DDIM schedule as their default; on the same grid they give the
same iterates, rescaled.
"""

from __future__ import annotations

import math

import torch

from ._common import batch_sigma, emit_step, register, step_noise
from .multistep import phi

# ---------------------------------------------------------------- DDIM

DDIM_FORMULA = "x̂0 = D_i, ε̂ = (x_i − D_i)/σ_i;  x_{i+1} = x̂0 + sqrt(σ_{i+1}² − σ_up²)·ε̂ + σ_up·z"


def ddim_sigma_up(sigma: float, sigma_next: float, eta: float) -> float:
    """DDIM's noise σ_t = η·sqrt((1 − ᾱ')/(1 − ᾱ))·sqrt(1 − ᾱ/ᾱ'), mapped to σ-space (÷ sqrt(ᾱ'))."""
    if not eta or sigma_next == 0:
        return 0.0
    abar, abar_next = 1.0 / (1.0 + sigma**2), 1.0 / (1.0 + sigma_next**2)
    var_vp = eta**2 * (1.0 - abar_next) / (1.0 - abar) * (1.0 - abar / abar_next)
    return min(sigma_next, math.sqrt(var_vp / abar_next))


def sample_ddim(denoiser, x, sigmas, *, generator=None, on_event=None, eta=0.0):
    """DDIM (Song et al. 2021, eq. 12) in σ-space; η = 0 is Euler, η = 1 the ancestral (DDPM) step."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        eps = (x - denoised) / sigma
        sigma_up = ddim_sigma_up(sigma, sigma_next, eta)
        direction = math.sqrt(max(sigma_next**2 - sigma_up**2, 0.0))
        x_next = denoised + direction * eps
        noise = None
        if sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + sigma_up * noise
        emit_step(
            on_event,
            "ddim",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            DDIM_FORMULA,
            noise,
            eta=eta,
            sigma_up=sigma_up,
            direction=direction,
        )
        x = x_next
    return x


# ---------------------------------------------------------------- PLMS

PLMS_FORMULA = (
    "ε′ = (ε_i + ε(x_i + (σ_{i+1} − σ_i)·ε_i, σ_{i+1}))/2 (first step) | (3, −1)/2 | (23, −16, 5)/12 |"
    " (55, −59, 37, −9)/24 on ε_i, ε_{i−1}, …;  x_{i+1} = x_i + (σ_{i+1} − σ_i)·ε′"
)
PLMS_WEIGHTS = ((1.0,), (3 / 2, -1 / 2), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def sample_plms(denoiser, x, sigmas, *, generator=None, on_event=None):
    """Pseudo linear multistep (Liu et al. 2022, PNDM): Adams–Bashforth on ε through DDIM's transfer."""
    old_eps: list = []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        eps = (x - denoised) / sigma
        if not old_eps and sigma_next > 0:
            # pseudo improved Euler: a DDIM step, ε there, the average (in σ-space: Heun's method)
            x_euler = x + (sigma_next - sigma) * eps
            eps_next = (x_euler - denoiser(x_euler, batch_sigma(x, sigma_next))) / sigma_next
            eps_prime, weights = (eps + eps_next) / 2, (0.5, 0.5)
        else:
            weights = PLMS_WEIGHTS[len(old_eps)]
            eps_prime = sum(w * e for w, e in zip(weights, [eps, *old_eps], strict=True))
        x_next = x + (sigma_next - sigma) * eps_prime
        emit_step(
            on_event,
            "plms",
            i,
            sigmas,
            x,
            x_next,
            x - sigma * eps_prime,
            PLMS_FORMULA,
            order=len(old_eps) + 1,
            **{f"w{j}": w for j, w in enumerate(weights)},
        )
        old_eps = [eps, *old_eps][:3]
        x = x_next
    return x


# ---------------------------------------------------------------- UniPC

UNIPC_FORMULA = (
    "h = λ_{i+1} − λ_i (λ = −ln σ), r_m = (λ_{i−m} − λ_i)/h, D1_m = (D_{i−m} − D_i)/r_m;  "
    "x̃ = (σ_{i+1}/σ_i)·x_i + (1 − σ_{i+1}/σ_i)·D_i;  predictor x̃ − B(h)·Σ ρ^p_m·D1_m;  "
    "corrector x̃ − B(h)·(Σ ρ^c_m·D1_m + ρ^c_K·(D(x_pred, σ_{i+1}) − D_i))"
)


def _unipc_update(x_lin, d1s, rks, h, variant, corrector_d1):
    """One UniP (``corrector_d1`` None) or UniC update in data prediction (Zhao et al. 2023, Alg. 2–3).

    Taylor: D(λ_i + rh) = D_i + Σ_k (rh)^k/k!·D^(k), and the exact step adds h·Σ_k φ_{k+1}(−h)·h^k·D^(k)
    to x̃. bh1/bh2 choose ρ so that Σ_m ρ_m·r_m^{k−1} = −h·k!·φ_{k+1}(−h)/B(h) for k = 1…K, with
    B(h) = −h (bh1) or e^{−h} − 1 (bh2); vary_coeff instead solves for the derivatives h^k·D^(k) directly.
    """
    d1s = d1s + ([corrector_d1] if corrector_d1 is not None else [])
    rks = rks + ([1.0] if corrector_d1 is not None else [])
    k_max = len(d1s)
    if k_max == 0:
        return x_lin, []
    if variant == "vary_coeff":
        c = torch.tensor(
            [[r ** (k - 1) / math.factorial(k) for k in range(1, k_max + 1)] for r in rks],
            dtype=torch.float64,
        )
        weights = [[float(v) for v in row] for row in torch.linalg.inv(c)]  # y_k = Σ_m inv[k][m]·D1_m
        out = x_lin
        for k in range(k_max):
            out = out + h * phi(k + 2, -h) * sum(w * d for w, d in zip(weights[k], d1s, strict=True))
        return out, [h * phi(k + 2, -h) for k in range(k_max)]
    b_h = -h if variant == "bh1" else math.expm1(-h)
    if k_max == 1:
        rhos = [0.5]  # the h → 0 limit of the one-condition solution; keeps the order (as the paper's code)
    else:
        r_mat = torch.tensor([[r ** (k - 1) for r in rks] for k in range(1, k_max + 1)], dtype=torch.float64)
        b = torch.tensor(
            [-h * math.factorial(k) * phi(k + 1, -h) / b_h for k in range(1, k_max + 1)], dtype=torch.float64
        )
        rhos = [float(v) for v in torch.linalg.solve(r_mat, b)]
    return x_lin - b_h * sum(rho * d for rho, d in zip(rhos, d1s, strict=True)), rhos


def sample_unipc(
    denoiser, x, sigmas, *, generator=None, on_event=None, order=3, variant="bh1", lower_order_final=True
):
    """UniPC multistep predictor–corrector in data prediction over λ = −ln σ (Zhao et al. 2023).

    One model call per step: the corrector's evaluation at the predicted point is reused as the next
    step's D (none on the last step). Warm-up steps use orders 1, 2, …; with ``lower_order_final`` the
    last steps drop to orders …, 2, 1. The step to σ = 0 returns D (the first-order limit).
    """
    if variant not in ("bh1", "bh2", "vary_coeff"):
        raise ValueError(f"unknown UniPC variant {variant!r}; expected bh1, bh2 or vary_coeff")
    n = len(sigmas) - 1
    hist_d: list = []
    hist_lam: list[float] = []
    denoised = denoiser(x, batch_sigma(x, float(sigmas[0])))
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        lam = -math.log(sigma)
        hist_d, hist_lam = [denoised, *hist_d][:order], [lam, *hist_lam][:order]
        if sigma_next == 0:
            emit_step(on_event, "unipc", i, sigmas, x, denoised, denoised, UNIPC_FORMULA, order=1)
            x = denoised
            continue
        step_order = min(order, i + 1, n - i) if lower_order_final else min(order, i + 1)
        h = math.log(sigma / sigma_next)
        rks = [(hist_lam[m] - lam) / h for m in range(1, step_order)]
        d1s = [(hist_d[m] - denoised) / r for m, r in zip(range(1, step_order), rks, strict=True)]
        x_lin = (sigma_next / sigma) * x - math.expm1(-h) * denoised
        x_pred, rhos_p = _unipc_update(x_lin, d1s, rks, h, variant, None)
        terms = {"h": h, "order": step_order, **{f"rho_p{m}": v for m, v in enumerate(rhos_p)}}
        if i < n - 1:
            denoised_next = denoiser(x_pred, batch_sigma(x, sigma_next))
            x_next, rhos_c = _unipc_update(x_lin, d1s, rks, h, variant, denoised_next - denoised)
            terms.update({f"rho_c{m}": v for m, v in enumerate(rhos_c)})
        else:
            x_next, denoised_next = x_pred, None
        emit_step(on_event, "unipc", i, sigmas, x, x_next, denoised, UNIPC_FORMULA, **terms)
        x, denoised = x_next, denoised_next
    return x


# ---------------------------------------------------------------- LCM and DDPM

LCM_FORMULA = "x_{i+1} = D(x_i, σ_i) + σ_{i+1}·z"


def sample_lcm(denoiser, x, sigmas, *, generator=None, on_event=None):
    """Latent consistency sampling: jump to the denoised estimate, re-noise to σ_{i+1} (Luo et al. 2023)."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        x_next, noise = denoised, None
        if sigma_next > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = denoised + sigma_next * noise
        emit_step(on_event, "lcm", i, sigmas, x, x_next, denoised, LCM_FORMULA, noise, sigma_next=sigma_next)
        x = x_next
    return x


DDPM_FORMULA = (
    "ᾱ = 1/(1 + σ_i²), ᾱ′ = 1/(1 + σ_{i+1}²), α = ᾱ/ᾱ′, x_vp = x_i·sqrt(ᾱ), ε = (x_i − D_i)/σ_i;  "
    "x_{i+1} = [(x_vp − (1 − α)·ε/sqrt(1 − ᾱ))/sqrt(α) + sqrt((1 − α)(1 − ᾱ′)/(1 − ᾱ))·z]/sqrt(ᾱ′)"
)


def sample_ddpm(denoiser, x, sigmas, *, generator=None, on_event=None):
    """Ancestral DDPM posterior step in VP coordinates (Ho et al. 2020, Alg. 2), mapped back to σ-space."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        eps = (x - denoised) / sigma
        abar, abar_next = 1.0 / (1.0 + sigma**2), 1.0 / (1.0 + sigma_next**2)
        alpha = abar / abar_next
        x_vp = x * math.sqrt(abar)
        mean = (x_vp - (1.0 - alpha) / math.sqrt(1.0 - abar) * eps) / math.sqrt(alpha)
        std = math.sqrt((1.0 - alpha) * (1.0 - abar_next) / (1.0 - abar))
        noise = None
        if sigma_next > 0:
            noise = noise_fn(sigma, sigma_next)
            mean = mean + std * noise
        x_next = mean / math.sqrt(abar_next)
        emit_step(
            on_event,
            "ddpm",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            DDPM_FORMULA,
            noise,
            alpha_bar=abar,
            alpha_bar_next=abar_next,
            alpha=alpha,
            posterior_std=std,
        )
        x = x_next
    return x


# ---------------------------------------------------------------- registry

TIMESTEP_NOTE = (
    " A1111 runs it on its own timestep grid from VP-space unit noise; here it runs over any σ schedule "
    "(default: the DDIM schedule)."
)

register(
    sample_ddim,
    "DDIM",
    aliases=("ddim",),
    description="Denoising diffusion implicit model step: keep x̂0 = D, re-noise along ε̂ to σ_{i+1}. η = eta "
    "(A1111's eta_ddim, default 0: deterministic, identical to Euler; η = 1: the DDPM/ancestral step). "
    "(ComfyUI's 'ddim' is Euler; A1111's DDIM this one.)" + TIMESTEP_NOTE,
    formula=DDIM_FORMULA,
    reference="Song, Meng & Ermon 2021, Denoising Diffusion Implicit Models (ICLR), eq. 12",
    default_schedule="DDIM",
)
register(
    sample_plms,
    "PLMS",
    aliases=("plms",),
    description="Pseudo linear multistep: first step a pseudo improved Euler (2 model calls, = Heun in "
    "σ-space), then Adams–Bashforth on ε with fixed weights up to 4th order, one call per step."
    + TIMESTEP_NOTE,
    formula=PLMS_FORMULA,
    reference="Liu, Ren, Lin & Zhao 2022, Pseudo Numerical Methods for Diffusion Models on Manifolds (ICLR)",
    default_schedule="DDIM",
)
register(
    sample_unipc,
    "UniPC",
    aliases=("unipc", "uni_pc"),
    description="Unified predictor–corrector (UniP-p + UniC-p) multistep solver in data prediction, order 3 "
    "(`order`), variant bh1 | bh2 | vary_coeff (A1111 uni_pc_variant, default bh1), lower_order_final. "
    "One model call per step. (ComfyUI's uni_pc also discards the penultimate σ; use 'UniPC BH2' for its "
    "uni_pc_bh2.)" + TIMESTEP_NOTE,
    formula=UNIPC_FORMULA,
    reference="Zhao, Bai, Rao, Zhou & Lu 2023, UniPC: A Unified Predictor-Corrector Framework for Fast "
    "Sampling of Diffusion Models (NeurIPS)",
    default_schedule="DDIM",
)
register(
    sample_unipc,
    "UniPC BH2",
    aliases=("uni_pc_bh2",),
    description="UniPC with B(h) = e^h − 1 (bh2) and the penultimate σ discarded, as ComfyUI's uni_pc_bh2.",
    formula=UNIPC_FORMULA,
    reference="Zhao et al. 2023, UniPC (B(h) = e^h − 1 variant)",
    defaults={"variant": "bh2"},
    discard_penultimate_sigma=True,
)
register(
    sample_lcm,
    "LCM",
    aliases=("k_lcm", "lcm"),
    description="Latent consistency model sampling: x ← D(x, σ_i), then fresh noise to σ_{i+1}. Meant for "
    "LCM-distilled models (A1111 applies the LCM boundary scaling inside the denoiser, not here).",
    formula=LCM_FORMULA,
    reference="Luo, Tan, Huang, Li & Zhao 2023, Latent Consistency Models, arXiv 2310.04378",
    stochastic=True,
)
register(
    sample_ddpm,
    "DDPM",
    aliases=("ddpm",),
    description="Ancestral DDPM: sample the posterior q(x_{t'} | x_t, x̂0) in VP coordinates, then rescale to "
    "σ-space (Forge/ComfyUI sampler). Mathematically the same step as DDIM η = 1 and Euler a.",
    formula=DDPM_FORMULA,
    reference="Ho, Jain & Abbeel 2020, Denoising Diffusion Probabilistic Models (NeurIPS), Alg. 2",
    stochastic=True,
)
