"""Linear multistep samplers: LMS, iPNDM, iPNDM-v, DEIS, RES multistep and gradient estimation.

Each keeps a short history of past model outputs and combines them with coefficients that come from
integrating an interpolating polynomial over the next step, so every step costs one model call.
All work on the probability-flow ODE dx/dσ = d(x, σ) = (x − D(x, σ))/σ in σ-space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.polynomial import legendre
from numpy.polynomial import polynomial as npoly

from ._common import ancestral_step, batch_sigma, emit_step, guided_and_uncond, register, step_noise, to_d

# ---------------------------------------------------------------- coefficient helpers


def lagrange_basis(nodes: Sequence[float], j: int) -> np.ndarray:
    """Power-series coefficients of the Lagrange basis polynomial L_j on ``nodes`` (L_j(nodes[k]) = δ_jk)."""
    poly = np.ones(1)
    for k, node in enumerate(nodes):
        if k != j:
            poly = npoly.polymul(poly, np.array([-node, 1.0]) / (nodes[j] - node))
    return poly


def adams_coefficients(nodes: Sequence[float], start: float, end: float) -> list[float]:
    """c_j = ∫_start^end L_j(τ) dτ for the Lagrange basis on ``nodes``, integrated exactly.

    The integrand is a polynomial, so its antiderivative is exact; we integrate in the unit variable
    u = (τ − start)/(end − start) to keep the arithmetic well conditioned. (k-diffusion uses
    ``scipy.integrate.quad`` with epsrel 1e-4; Gauss–Kronrod is exact on these low-degree polynomials
    too, so both give the same numbers up to rounding.)
    """
    h = end - start
    unit = [(node - start) / h for node in nodes]
    out = []
    for j in range(len(nodes)):
        antiderivative = npoly.polyint(lagrange_basis(unit, j))
        out.append(h * float(npoly.polyval(1.0, antiderivative) - npoly.polyval(0.0, antiderivative)))
    return out


def phi(k: int, z: float) -> float:
    """φ_k(z) = Σ_{j≥0} z^j/(j + k)! (φ_0 = e^z, φ_1 = (e^z − 1)/z, φ_{k+1} = (φ_k − 1/k!)/z).

    The series is used for |z| < 1, where the recurrence would cancel catastrophically.
    """
    if k == 0:
        return math.exp(z)
    if abs(z) < 1.0:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(30):
            total += term
            term *= z / (j + k + 1)
        return total
    value = math.expm1(z) / z
    for m in range(1, k):
        value = (value - 1.0 / math.factorial(m)) / z
    return value


# DEIS "tab" time: the VP-SDE time t ∈ [ε_s, 1] with σ(t)² = exp(β_d·t²/2 + β_min·t) − 1, its two
# constants fixed by σ(ε_s) = 0.002 and σ(1) = 80 (EDM's range), as in the DEIS port used by ComfyUI.
DEIS_EPS_S, DEIS_SIGMA_MIN, DEIS_SIGMA_MAX = 1e-3, 0.002, 80.0
_L0, _L1 = math.log1p(DEIS_SIGMA_MIN**2), math.log1p(DEIS_SIGMA_MAX**2)
DEIS_BETA_D = 2.0 * (_L0 / DEIS_EPS_S - _L1) / (DEIS_EPS_S - 1.0)
DEIS_BETA_MIN = _L1 - 0.5 * DEIS_BETA_D


def deis_time(sigma: float | np.ndarray) -> float | np.ndarray:
    """VP time t(σ) = (sqrt(β_min² + 2·β_d·ln(1 + σ²)) − β_min)/β_d, the inverse of σ(t) above."""
    return (
        np.sqrt(DEIS_BETA_MIN**2 + 2.0 * DEIS_BETA_D * np.log1p(np.square(sigma))) - DEIS_BETA_MIN
    ) / DEIS_BETA_D


_GAUSS_NODES, _GAUSS_WEIGHTS = legendre.leggauss(24)


def deis_coefficients(sigmas: Sequence[float], i: int, order: int) -> list[float]:
    """DEIS-tAB coefficients C_j for step i (Zhang & Chen 2023, the tAB variant: polynomial in t).

    The VP exponential integrator with ε-prediction, x_t' = sqrt(ᾱ'/ᾱ)·x_t + sqrt(ᾱ')·∫ σ'(τ)·ε(τ) dτ,
    is in σ-space (x = x_vp/sqrt(ᾱ)) simply x' = x + ∫_t^t' σ'(τ)·ε(τ) dτ. DEIS-tAB replaces ε(τ) by
    its Lagrange interpolant in t through the last ``order`` points, so
    C_j = ∫_{t_i}^{t_{i+1}} σ'(τ)·L_j(τ) dτ = ∫_{σ_i}^{σ_{i+1}} L_j(t(σ)) dσ. The right-hand form has a
    smooth integrand (t(σ) is analytic), so 24-point Gauss–Legendre is exact to rounding.
    """
    times = [float(deis_time(float(sigmas[i - k]))) for k in range(order)]
    a, b = float(sigmas[i]), float(sigmas[i + 1])
    s = 0.5 * (b - a) * _GAUSS_NODES + 0.5 * (a + b)
    t = deis_time(s)
    out = []
    for j in range(order):
        basis = np.ones_like(t)
        for k in range(order):
            if k != j:
                basis = basis * (t - times[k]) / (times[j] - times[k])
        out.append(float(0.5 * (b - a) * np.sum(_GAUSS_WEIGHTS * basis)))
    return out


IPNDM_COEFFICIENTS = ((1.0,), (1.5, -0.5), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


# ---------------------------------------------------------------- samplers

LMS_FORMULA = (
    "x_{i+1} = x_i + Σ_j c_j·d_{i−j},  c_j = ∫_{σ_i}^{σ_{i+1}} Π_{k≠j} (τ − σ_{i−k})/(σ_{i−j} − σ_{i−k}) dτ"
)


def sample_lms(denoiser, x, sigmas, *, generator=None, on_event=None, order=4):
    """Linear multistep: variable-step Adams–Bashforth on d, as k-diffusion's sample_lms."""
    ds: list = []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        ds.insert(0, to_d(x, sigma, denoised))
        del ds[order:]
        coeffs = adams_coefficients([float(sigmas[i - j]) for j in range(len(ds))], sigma, sigma_next)
        x_next = x + sum(c * d for c, d in zip(coeffs, ds, strict=True))
        emit_step(
            on_event,
            "lms",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            LMS_FORMULA,
            order=len(ds),
            **{f"c{j}": c for j, c in enumerate(coeffs)},
        )
        x = x_next
    return x


def _ab_sampler(
    name: str, formula: str, coefficients: Callable[[Sequence[float], int, int], Sequence[float]]
):
    """iPNDM-style loop: x_{i+1} = x_i + (σ_{i+1} − σ_i)·Σ_j c_j·d_{i−j}; the step to σ = 0 returns D."""

    def sample(denoiser, x, sigmas, *, generator=None, on_event=None, max_order=4):
        ds: list = []
        for i in range(len(sigmas) - 1):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            denoised = denoiser(x, batch_sigma(x, sigma))
            ds.insert(0, to_d(x, sigma, denoised))
            del ds[max_order:]
            if sigma_next == 0:
                coeffs: Sequence[float] = (1.0,)
                x_next = denoised  # = x + (0 − σ)·d_i: the final denoising step
            else:
                coeffs = coefficients(sigmas, i, len(ds))
                x_next = x + (sigma_next - sigma) * sum(c * d for c, d in zip(coeffs, ds, strict=False))
            emit_step(
                on_event,
                name,
                i,
                sigmas,
                x,
                x_next,
                denoised,
                formula,
                order=len(coeffs),
                dt=sigma_next - sigma,
                **{f"c{j}": c for j, c in enumerate(coeffs)},
            )
            x = x_next
        return x

    sample.__name__ = f"sample_{name}"
    return sample


def _ipndm_fixed(sigmas, i, order):
    return IPNDM_COEFFICIENTS[order - 1]


def _ipndm_variable(sigmas, i, order):
    sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
    nodes = [float(sigmas[i - j]) for j in range(order)]
    return [c / (sigma_next - sigma) for c in adams_coefficients(nodes, sigma, sigma_next)]


IPNDM_FORMULA = (
    "x_{i+1} = x_i + (σ_{i+1} − σ_i)·Σ_j b_j·d_{i−j},"
    "  b = (1) | (3, −1)/2 | (23, −16, 5)/12 | (55, −59, 37, −9)/24"
)
IPNDM_V_FORMULA = (
    "x_{i+1} = x_i + (σ_{i+1} − σ_i)·Σ_j b_j·d_{i−j},  b_j = variable-step Adams–Bashforth weights"
)
sample_ipndm = _ab_sampler("ipndm", IPNDM_FORMULA, _ipndm_fixed)
sample_ipndm.__doc__ = (
    "Improved PNDM: Adams–Bashforth on d with fixed uniform-step weights (Zhang & Chen 2023, iPNDM)."
)
sample_ipndm_v = _ab_sampler("ipndm_v", IPNDM_V_FORMULA, _ipndm_variable)
sample_ipndm_v.__doc__ = "iPNDM with the weights recomputed for the actual (non-uniform) σ steps."

DEIS_FORMULA = (
    "x_{i+1} = x_i + Σ_j C_j·d_{i−j},  C_j = ∫_{σ_i}^{σ_{i+1}} L_j(t(σ)) dσ"
    "  (L_j: Lagrange basis in VP time t)"
)


def sample_deis(denoiser, x, sigmas, *, generator=None, on_event=None, max_order=3):
    """DEIS-tAB: exponential integrator with ε extrapolated polynomially in VP time (Zhang & Chen 2023)."""
    ds: list = []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        ds.insert(0, to_d(x, sigma, denoised))
        del ds[max_order:]
        if sigma_next <= 0 or len(ds) == 1:
            coeffs = [sigma_next - sigma]  # first step and the final step to σ = 0: Euler (DDIM)
        else:
            coeffs = deis_coefficients(sigmas, i, len(ds))
        x_next = x + sum(c * d for c, d in zip(coeffs, ds, strict=False))
        emit_step(
            on_event,
            "deis",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            DEIS_FORMULA,
            order=len(coeffs),
            **{f"C{j}": c for j, c in enumerate(coeffs)},
        )
        x = x_next
    return x


RES_FORMULA = (
    "h = ln(σ_i/σ_down), r = ln(σ_{i−1}/σ_i)/h;  x_{i+1} = D_i + (σ_down/σ_i)·(x_i − D_i)"
    " + h·φ₂(−h)·(D_i − D_{i−1})/r  [+ σ_up·z]"
)
RES_CFGPP_FORMULA = (
    "h = ln(σ_i/σ_down), r = ln(σ_{i−1}/σ_i)/h;  x_{i+1} = D^g_i + (σ_down/σ_i)·(x_i − D^u_i)"
    " + h·φ₂(−h)·(D^g_i − D^u_{i−1})/r  [+ σ_up·z]"
)


def res_multistep(denoiser, x, sigmas, *, generator=None, on_event=None, eta=0.0, s_noise=1.0, cfg_pp=False):
    """RES second-order multistep in data prediction over λ = −ln σ (Zhang et al. 2023, arXiv 2308.02157).

    With φ₁(−h) = (1 − e^{−h})/h and φ₂(−h) = (1 − φ₁(−h))/h, the exponential integrator of
    dx/dλ = D − x with D interpolated linearly in λ through (λ_{i−1}, D_{i−1}), (λ_i, D_i) gives
    x_{i+1} = e^{−h}·x_i + h·φ₁·D_i + h·φ₂·(D_i − D_{i−1})/r. With ``eta`` > 0 it steps to σ_down and
    adds σ_up·z (ancestral); the previous estimate keeps its own λ_{i−1}. ``cfg_pp``: x0 from the
    guided estimate, the re-noising direction (and the history) from the unconditional one (CFG++).
    The first step and the step to σ_down = 0 are Euler steps.
    """
    name = "res_multistep" + ("_ancestral" if eta else "") + ("_cfg_pp" if cfg_pp else "")
    formula = RES_CFGPP_FORMULA if cfg_pp else RES_FORMULA
    noise_fn = step_noise(x, generator)
    old, old_sigma = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if cfg_pp:
            denoised, uncond = guided_and_uncond(denoiser, x, batch_sigma(x, sigma))
        else:
            denoised = uncond = denoiser(x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x_next = denoised + (sigma_down / sigma) * (x - uncond)
        terms = {"sigma_down": sigma_down, "sigma_up": sigma_up}
        if sigma_down > 0 and old is not None:
            h = math.log(sigma / sigma_down)
            r = math.log(old_sigma / sigma) / h
            coeff = h * phi(2, -h) / r
            x_next = x_next + coeff * (denoised - old)
            terms.update(h=h, r=r, phi1=phi(1, -h), phi2=phi(2, -h), coeff=coeff)
        noise = None
        if sigma_next > 0 and sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + noise * s_noise * sigma_up
        emit_step(on_event, name, i, sigmas, x, x_next, denoised, formula, noise, **terms)
        old, old_sigma = uncond, sigma
        x = x_next
    return x


def sample_res_multistep(denoiser, x, sigmas, *, generator=None, on_event=None, s_noise=1.0):
    """RES multistep, deterministic (η = 0)."""
    return res_multistep(
        denoiser, x, sigmas, generator=generator, on_event=on_event, eta=0.0, s_noise=s_noise
    )


def sample_res_multistep_ancestral(
    denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0
):
    """RES multistep to σ_down, then fresh noise σ_up·z (ancestral, η = 1 by default)."""
    return res_multistep(
        denoiser, x, sigmas, generator=generator, on_event=on_event, eta=eta, s_noise=s_noise
    )


GE_FORMULA = "x_{i+1} = x_i + (σ_{i+1} − σ_i)·(γ·d_i + (1 − γ)·d_{i−1})"


def sample_gradient_estimation(denoiser, x, sigmas, *, generator=None, on_event=None, ge_gamma=2.0):
    """Gradient estimation: Euler with d extrapolated by γ (Permenter & Yuan 2024, arXiv 2306.04848)."""
    old_d = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        d = to_d(x, sigma, denoised)
        dt = sigma_next - sigma
        if sigma_next == 0:
            x_next, gamma = denoised, 1.0  # final denoising step
        elif old_d is None:
            x_next, gamma = x + d * dt, 1.0  # first step: Euler
        else:
            gamma = ge_gamma
            x_next = x + (gamma * d + (1 - gamma) * old_d) * dt
        emit_step(
            on_event, "gradient_estimation", i, sigmas, x, x_next, denoised, GE_FORMULA, dt=dt, gamma=gamma
        )
        old_d, x = d, x_next
    return x


# ---------------------------------------------------------------- registry

register(
    sample_lms,
    "LMS",
    aliases=("k_lms", "lms"),
    description="Linear multistep (Adams–Bashforth) on the ODE derivative, up to 4 past derivatives, one "
    "model call per step. Coefficients integrate the Lagrange interpolant exactly (k-diffusion uses scipy "
    "quad; same numbers). Like A1111, the last step to σ = 0 is a full LMS step (ComfyUI's lms ends with "
    "x = D).",
    formula=LMS_FORMULA,
    reference="Karras et al. 2022 / k-diffusion sample_lms (classical Adams–Bashforth, variable step)",
)
register(
    sample_ipndm,
    "IPNDM",
    aliases=("ipndm",),
    description="Improved pseudo-numerical method: Adams–Bashforth on d with the fixed uniform-step weights, "
    "up to order 4 (max_order); the step to σ = 0 returns D. Forge/ComfyUI sampler.",
    formula=IPNDM_FORMULA,
    reference="Zhang & Chen 2023, Fast Sampling of Diffusion Models with Exponential Integrator (iPNDM); "
    "zju-pi/diff-sampler",
)
register(
    sample_ipndm_v,
    "IPNDM_V",
    aliases=("ipndm_v",),
    description="iPNDM with exact variable-step Adams–Bashforth weights (Lagrange integrals over the actual "
    "σ steps), up to order 4; the step to σ = 0 returns D. ComfyUI/Forge use closed-form order-3/4 weights "
    "that equal these only on uniform steps, so results differ slightly on Karras-type schedules.",
    formula=IPNDM_V_FORMULA,
    reference="Zhang & Chen 2023 (iPNDM), variable-step Adams–Bashforth; zju-pi/diff-sampler ipndm_v",
)
register(
    sample_deis,
    "DEIS",
    aliases=("deis",),
    description="Diffusion exponential integrator sampler, tAB variant, order 3 (max_order): ε is "
    "extrapolated by a Lagrange polynomial in VP time t (σ(ε_s=1e-3) = 0.002, σ(1) = 80) and integrated "
    "exactly against dσ/dt. First step and the step to σ = 0 are Euler.",
    formula=DEIS_FORMULA,
    reference="Zhang & Chen 2023, Fast Sampling of Diffusion Models with Exponential Integrator (ICLR), "
    "DEIS-tAB",
)
register(
    sample_res_multistep,
    "res_multistep",
    description="RES second-order multistep exponential integrator in data prediction (ComfyUI name). "
    "One model call per step.",
    formula=RES_FORMULA,
    reference="Zhang, Song & Chen 2023, Improved Order Analysis and Design of Exponential Integrator for "
    "Diffusion Models Sampling (RES), arXiv 2308.02157",
)
register(
    sample_res_multistep_ancestral,
    "res_multistep_ancestral",
    description="RES multistep down to σ_down, then fresh noise σ_up·z (η = 1); ComfyUI name.",
    formula=RES_FORMULA,
    reference="RES (arXiv 2308.02157) with the ancestral split of Song et al. 2021",
    stochastic=True,
)
register(
    sample_gradient_estimation,
    "gradient_estimation",
    description="Euler with the derivative extrapolated from the previous one, d̄ = γ·d_i + (1 − γ)·d_{i−1}, "
    "γ = ge_gamma = 2 (ComfyUI name). First-order accurate as an ODE solver; the step to σ = 0 returns D.",
    formula=GE_FORMULA,
    reference="Permenter & Yuan 2024, Interpreting and Improving Diffusion Models from an Optimization "
    "Perspective (ICML), arXiv 2306.04848",
)
