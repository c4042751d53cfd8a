"""DPM-Solver family: DPM-Solver fast/adaptive (ε form) and the DPM-Solver++ samplers (data form).

All work in t = −ln σ (the half log-SNR of an ε model), with step h = t_{i+1} − t_i = ln(σ_i/σ_{i+1}).
"""

from __future__ import annotations

import math

import torch

from ..events import SamplerStep
from ._common import ancestral_step, batch_sigma, brownian_noise, emit_step, register, step_noise, to_d


def _t(sigma: float) -> float:
    return -math.log(sigma)


def _sigma(t: float) -> float:
    return math.exp(-t)


# ---------------------------------------------------------------- DPM-Solver (Lu et al. 2022), ε form

DPM_FAST_FORMULA = (
    "uniform steps in t = −ln σ, orders 3, …, 3, then 2, 1 (or N mod 3) to spend N model calls; "
    "DPM-Solver-1: x′ = x − σ(t′)·(e^h − 1)·ε̂(x, t); "
    "DPM-Solver-2: u = x − σ(s)·(e^{h/2} − 1)·ε̂, x′ = x − σ(t′)·(e^h − 1)·ε̂(u, s), s = t + h/2; "
    "DPM-Solver-3: s_k = t + r_k·h (r₁ = 1/3, r₂ = 2/3), u₁ = x − σ(s₁)·(e^{r₁h} − 1)·ε̂, "
    "u₂ = x − σ(s₂)·(e^{r₂h} − 1)·ε̂ − σ(s₂)·(r₂/r₁)·((e^{r₂h} − 1)/(r₂h) − 1)·(ε̂(u₁, s₁) − ε̂), "
    "x′ = x − σ(t′)·(e^h − 1)·ε̂ − (σ(t′)/r₂)·((e^h − 1)/h − 1)·(ε̂(u₂, s₂) − ε̂)"
)
DPM_ADAPTIVE_FORMULA = (
    "embedded pair (DPM-Solver-2 with r₁ = 1/3, DPM-Solver-3), err = ‖(x_low − x_high)/δ‖/√n, "
    "δ = max(atol, rtol·max(|x_low|, |x_prev|)); accept if the step factor ≥ 0.81, h ← h·factor"
)


class _DPMSolver:
    """DPM-Solver steps in ε form on t = −ln σ, counting model calls; ε̂(x, t) = (x − D(x, σ(t)))/σ(t)."""

    def __init__(self, denoiser, x):
        self.denoiser, self.nfe = denoiser, 0
        self.s_in = batch_sigma(x, 1.0)

    def eps(self, x, t):
        self.nfe += 1
        sigma = _sigma(t)
        return to_d(x, sigma, self.denoiser(x, self.s_in * sigma))

    def first(self, x, t, t_next, e0):
        """DPM-Solver-1 (= DDIM = Euler in σ): x − σ(t′)·(e^h − 1)·ε̂."""
        return x - _sigma(t_next) * math.expm1(t_next - t) * e0

    def second(self, x, t, t_next, e0, r1=0.5, e1=None):
        """DPM-Solver-2 (Lu et al. 2022) in VE form; returns (x′, ε̂ at s₁)."""
        h = t_next - t
        if e1 is None:
            e1 = self.eps(self.first(x, t, t + r1 * h, e0), t + r1 * h)
        x_next = (
            x - _sigma(t_next) * math.expm1(h) * e0 - _sigma(t_next) / (2 * r1) * math.expm1(h) * (e1 - e0)
        )
        return x_next, e1

    def third(self, x, t, t_next, e0, r1=1 / 3, r2=2 / 3, e1=None):
        """DPM-Solver-3 (Lu et al. 2022) in VE form."""
        h = t_next - t
        if e1 is None:
            e1 = self.eps(self.first(x, t, t + r1 * h, e0), t + r1 * h)
        s2 = t + r2 * h
        phi = math.expm1(r2 * h)
        u2 = x - _sigma(s2) * phi * e0 - _sigma(s2) * (r2 / r1) * (phi / (r2 * h) - 1) * (e1 - e0)
        e2 = self.eps(u2, s2)
        return (
            x
            - _sigma(t_next) * math.expm1(h) * e0
            - _sigma(t_next) / r2 * (math.expm1(h) / h - 1) * (e2 - e0)
        )


def _ancestral_target(t, t_next, t_end, eta):
    """(t of σ_down clamped to the end, the σ_up that restores σ(t_next)) for an ancestral step."""
    if not eta:
        return t_next, 0.0
    sigma_down, _ = ancestral_step(_sigma(t), _sigma(t_next), eta)
    t_down = min(t_end, _t(sigma_down)) if sigma_down > 0 else t_end
    return t_down, math.sqrt(max(_sigma(t_next) ** 2 - _sigma(t_down) ** 2, 0.0))


def _sigma_range(sigmas):
    positive = sigmas[sigmas > 0]
    return float(sigmas[0]), float(positive.min())


def sample_dpm_fast(denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0):
    """DPM-Solver-fast: N = len(sigmas) − 1 model calls from σ_max to σ_min (Lu et al. 2022, §3.4)."""
    nfe = len(sigmas) - 1
    if nfe < 1:
        return x
    sigma_max, sigma_min = _sigma_range(sigmas)
    t_start, t_end = _t(sigma_max), _t(sigma_min)
    m = nfe // 3 + 1
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    ts = torch.linspace(t_start, t_end, m + 1, dtype=torch.float64)
    grid = (-ts).exp()  # the σ of each step's ends, for the events
    solver, noise_fn = _DPMSolver(denoiser, x), step_noise(x, generator)
    for i, order in enumerate(orders):
        t, t_next = float(ts[i]), float(ts[i + 1])
        t_down, sigma_up = _ancestral_target(t, t_next, t_end, eta)
        e0 = solver.eps(x, t)
        if order == 1:
            x_next = solver.first(x, t, t_down, e0)
        else:
            x_next = solver.second(x, t, t_down, e0)[0] if order == 2 else solver.third(x, t, t_down, e0)
        noise = None
        if sigma_up > 0:
            noise = noise_fn(_sigma(t), _sigma(t_next))
            x_next = x_next + noise * s_noise * sigma_up
        terms = {"h": t_down - t, "order": order, "sigma_down": _sigma(t_down), "sigma_up": sigma_up}
        emit_step(
            on_event, "dpm_fast", i, grid, x, x_next, x - _sigma(t) * e0, DPM_FAST_FORMULA, noise, **terms
        )
        x = x_next
    return x


class _StepController:
    """PID step-size control (Söderlind 2003): h ← h·(1 + atan(f − 1)), f = Π_k ε_k^{β_k}, ε = 1/error."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order, accept_safety):
        self.h, self.accept_safety = h, accept_safety
        self.b = ((pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order, dcoeff / order)
        self.inv_errors: list[float] = []

    def propose(self, error: float) -> bool:
        inv = 1 / (error + 1e-8)
        if not self.inv_errors:
            self.inv_errors = [inv, inv, inv]
        self.inv_errors[0] = inv
        factor = math.prod(e**b for e, b in zip(self.inv_errors, self.b, strict=True))
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.inv_errors = [inv, inv, self.inv_errors[1]]
        self.h *= factor
        return accept


def sample_dpm_adaptive(
    denoiser,
    x,
    sigmas,
    *,
    generator=None,
    on_event=None,
    order=3,
    rtol=0.05,
    atol=0.0078,
    h_init=0.05,
    pcoeff=0.0,
    icoeff=1.0,
    dcoeff=0.0,
    accept_safety=0.81,
    eta=1.0,
    s_noise=1.0,
):
    """DPM-Solver with adaptive step size from an embedded lower-order pair (Lu et al. 2022, §3.5)."""
    if order not in (2, 3):
        raise ValueError(f"DPM adaptive order must be 2 or 3, got {order}")
    sigma_max, sigma_min = _sigma_range(sigmas)
    t, t_end = _t(sigma_max), _t(sigma_min)
    solver, noise_fn = _DPMSolver(denoiser, x), step_noise(x, generator)
    control = _StepController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
    x_prev, i, e0 = x, 0, None
    while t < t_end - 1e-5:
        t_next = min(t_end, t + control.h)
        t_down, sigma_up = _ancestral_target(t, t_next, t_end, eta)
        if e0 is None:  # a rejected step retries from the same point and keeps its ε̂
            e0 = solver.eps(x, t)
        if order == 2:
            x_low = solver.first(x, t, t_down, e0)
            x_high, _ = solver.second(x, t, t_down, e0)
        else:
            x_low, e1 = solver.second(x, t, t_down, e0, r1=1 / 3)
            x_high = solver.third(x, t, t_down, e0, e1=e1)
        delta = torch.maximum(torch.full_like(x_low, atol), rtol * torch.maximum(x_low.abs(), x_prev.abs()))
        error = float(torch.linalg.vector_norm((x_low - x_high) / delta)) / math.sqrt(x.numel())
        if not control.propose(error):
            continue
        x_next, noise = x_high, None
        if sigma_up > 0:
            noise = noise_fn(_sigma(t), _sigma(t_next))
            x_next = x_next + noise * s_noise * sigma_up
        if on_event is not None:
            remaining = math.ceil(max(t_end - t_next - 1e-5, 0.0) / control.h)
            terms = {"h": t_down - t, "error": error, "nfe": float(solver.nfe)}
            terms |= {"sigma_down": _sigma(t_down), "sigma_up": sigma_up}
            step = SamplerStep(
                sampler="dpm_adaptive",
                i=i,
                total=i + 1 + remaining,
                sigma=_sigma(t),
                sigma_next=_sigma(t_next),
                x=x,
                x_next=x_next,
                denoised=x - _sigma(t) * e0,
                formula=DPM_ADAPTIVE_FORMULA,
                terms=terms,
                noise=noise,
            )
            on_event(step)
        x_prev, x, t, i, e0 = x_low, x_next, t_next, i + 1, None
    return x


# ---------------------------------------------------------------- DPM-Solver++ (Lu et al. 2022b), data form

DPMPP_2S_A_FORMULA = (
    "(σ_down, σ_up) = ancestral(σ_i, σ_{i+1}, η); h = ln(σ_i/σ_down); σ_s = sqrt(σ_i·σ_down); "
    "u = (σ_s/σ_i)·x_i − (e^{−h/2} − 1)·D_i; x_{i+1} = (σ_down/σ_i)·x_i − (e^{−h} − 1)·D(u, σ_s) + σ_up·z"
)
DPMPP_SDE_FORMULA = (
    "h = ln(σ_i/σ_{i+1}), σ_s = σ_i·e^{−h/2}; u = (σ_d1/σ_i)·x_i − (e^{−(s′−t)} − 1)·D_i + σ_u1·W₁ "
    "(ancestral split σ_i → σ_s); D′ = (1 − 1/(2r))·D_i + (1/(2r))·D(u, σ_s); "
    "x_{i+1} = (σ_d2/σ_i)·x_i − (e^{−(t′−t)} − 1)·D′ + σ_u2·W₂ (split σ_i → σ_{i+1}); r = 1/2"
)
DPMPP_2M_FORMULA = (
    "h_i = ln(σ_i/σ_{i+1}), r = h_{i−1}/h_i; D̃ = (1 + 1/(2r))·D_i − (1/(2r))·D_{i−1}; "
    "x_{i+1} = (σ_{i+1}/σ_i)·x_i − (e^{−h_i} − 1)·D̃   (D̃ = D_i on the first step and the step to σ = 0)"
)
DPMPP_2M_SDE_FORMULA = (
    "h = ln(σ_i/σ_{i+1}), h_η = (1 + η)·h; x_{i+1} = (σ_{i+1}/σ_i)·e^{−ηh}·x_i + (1 − e^{−h_η})·D_i "
    "+ c·(D_i − D_{i−1})·h/h_{i−1} + σ_{i+1}·sqrt(1 − e^{−2ηh})·W; "
    "c = (1 − e^{−h_η})/2 (midpoint) or 1 − (1 − e^{−h_η})/h_η (heun); x = D_i at σ = 0"
)
DPMPP_3M_SDE_FORMULA = (
    "h_η = (1 + η)·h; x_{i+1} = e^{−h_η}·x_i + (1 − e^{−h_η})·D_i + φ₂·d₁ − φ₃·d₂ "
    "+ σ_{i+1}·sqrt(1 − e^{−2ηh})·W; "
    "φ₂ = (e^{−h_η} − 1)/h_η + 1, φ₃ = φ₂/h_η − 1/2; d₁, d₂ = first and second divided differences of D "
    "over the last three steps (r₀ = h_{i−1}/h, r₁ = h_{i−2}/h); x = D_i at σ = 0"
)


def sample_dpmpp_2s_ancestral(denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0):
    """DPM-Solver++(2S) singlestep to σ_down, then fresh noise σ_up (Lu et al. 2022b; k-diffusion)."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        if sigma_down == 0:
            h = sigma_s = 0.0
            x_next = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        else:
            h = _t(sigma_down) - _t(sigma)
            sigma_s = _sigma(_t(sigma) + h / 2)
            u = (sigma_s / sigma) * x - math.expm1(-h / 2) * denoised
            denoised_2 = denoiser(u, batch_sigma(x, sigma_s))
            x_next = (sigma_down / sigma) * x - math.expm1(-h) * denoised_2
        noise = None
        if sigma_next > 0 and sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + noise * s_noise * sigma_up
        terms = {"h": h, "sigma_s": sigma_s, "sigma_down": sigma_down, "sigma_up": sigma_up}
        emit_step(
            on_event, "dpmpp_2s_ancestral", i, sigmas, x, x_next, denoised, DPMPP_2S_A_FORMULA, noise, **terms
        )
        x = x_next
    return x


def sample_dpmpp_sde(denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0, r=0.5):
    """DPM-Solver++ stochastic, two stages per step with Brownian noise (Lu et al. 2022b; k-diffusion)."""
    noise_fn = brownian_noise(x, sigmas, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        noise, terms = None, {}
        if sigma_next == 0:
            x_next = x + to_d(x, sigma, denoised) * (sigma_next - sigma)
        else:
            t, t_next = _t(sigma), _t(sigma_next)
            h = t_next - t
            sigma_s, fac = _sigma(t + r * h), 1 / (2 * r)
            # stage 1: ancestral step σ_i → σ_s
            sd1, su1 = ancestral_step(sigma, sigma_s, eta)
            u = (sd1 / sigma) * x - math.expm1(t - _t(sd1)) * denoised
            if su1 > 0:
                u = u + noise_fn(sigma, sigma_s) * s_noise * su1
            denoised_d = (1 - fac) * denoised + fac * denoiser(u, batch_sigma(x, sigma_s))
            # stage 2: ancestral step σ_i → σ_{i+1} with the combined estimate
            sd2, su2 = ancestral_step(sigma, sigma_next, eta)
            x_next = (sd2 / sigma) * x - math.expm1(t - _t(sd2)) * denoised_d
            if su2 > 0:
                noise = noise_fn(sigma, sigma_next)
                x_next = x_next + noise * s_noise * su2
            terms = {
                "h": h,
                "r": r,
                "sigma_s": sigma_s,
                "sigma_down_1": sd1,
                "sigma_up_1": su1,
                "sigma_down": sd2,
                "sigma_up": su2,
            }
        emit_step(on_event, "dpmpp_sde", i, sigmas, x, x_next, denoised, DPMPP_SDE_FORMULA, noise, **terms)
        x = x_next
    return x


def sample_dpmpp_2m(denoiser, x, sigmas, *, generator=None, on_event=None):
    """DPM-Solver++(2M): second-order multistep in the data prediction (Lu et al. 2022b, Alg. 2)."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        terms = {}
        if sigma_next == 0:
            h, x_next = math.inf, denoised
        else:
            h = _t(sigma_next) - _t(sigma)
            d_tilde = denoised
            if old_denoised is not None:
                r = h_last / h
                d_tilde = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
                terms["r"] = r
            x_next = (sigma_next / sigma) * x - math.expm1(-h) * d_tilde
            terms["h"] = h
        emit_step(on_event, "dpmpp_2m", i, sigmas, x, x_next, denoised, DPMPP_2M_FORMULA, **terms)
        old_denoised, h_last, x = denoised, h, x_next
    return x


def sample_dpmpp_2m_sde(
    denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0, solver_type="midpoint"
):
    """DPM-Solver++(2M) SDE with Brownian noise (Lu et al. 2022b; k-diffusion's sample_dpmpp_2m_sde)."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    noise_fn = brownian_noise(x, sigmas, generator)
    old_denoised, h_last = None, None
    name = "dpmpp_2m_sde_heun" if solver_type == "heun" else "dpmpp_2m_sde"
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        noise, h, terms = None, math.inf, {"eta": eta}
        if sigma_next == 0:
            x_next = denoised
        else:
            h = _t(sigma_next) - _t(sigma)
            h_eta = (1 + eta) * h
            one_minus = -math.expm1(-h_eta)  # 1 − e^{−h_η}
            x_next = (sigma_next / sigma) * math.exp(-eta * h) * x + one_minus * denoised
            c = 0.0
            if old_denoised is not None:
                c = 1 - one_minus / h_eta if solver_type == "heun" else one_minus / 2
                x_next = x_next + c * (h / h_last) * (denoised - old_denoised)
            sigma_up = sigma_next * math.sqrt(-math.expm1(-2 * eta * h))
            if sigma_up > 0:
                noise = noise_fn(sigma, sigma_next)
                x_next = x_next + noise * s_noise * sigma_up
            terms |= {"h": h, "c": c, "sigma_up": sigma_up}
        emit_step(on_event, name, i, sigmas, x, x_next, denoised, DPMPP_2M_SDE_FORMULA, noise, **terms)
        old_denoised, h_last, x = denoised, h, x_next
    return x


def sample_dpmpp_3m_sde(denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0):
    """DPM-Solver++(3M) SDE: three-step multistep with Brownian noise (k-diffusion's sample_dpmpp_3m_sde).

    The coefficients are DPM-Solver's (as k-diffusion, A1111 and ComfyUI use them). There d₂ ≈ h²D''/2, so
    φ₃·d₂ is half the Taylor term the exponential integrator needs: the step is locally O(h³) and the
    method second order overall (measured on the exact Gaussian oracle). Kept for identical images.
    """
    noise_fn = brownian_noise(x, sigmas, generator)
    denoised_1 = denoised_2 = None
    h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        noise, h, terms = None, math.inf, {"eta": eta}
        if sigma_next == 0:
            x_next = denoised
        else:
            h = _t(sigma_next) - _t(sigma)
            h_eta = (1 + eta) * h
            x_next = math.exp(-h_eta) * x - math.expm1(-h_eta) * denoised
            phi_2 = phi_3 = 0.0
            if h_1 is not None:
                phi_2 = math.expm1(-h_eta) / h_eta + 1
                d1_0 = (denoised - denoised_1) * (h / h_1)
                if h_2 is not None:
                    phi_3 = phi_2 / h_eta - 0.5
                    r0, r1 = h_1 / h, h_2 / h
                    d1_1 = (denoised_1 - denoised_2) / r1
                    d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
                    d2 = (d1_0 - d1_1) / (r0 + r1)
                    x_next = x_next + phi_2 * d1 - phi_3 * d2
                else:
                    x_next = x_next + phi_2 * d1_0
            sigma_up = sigma_next * math.sqrt(-math.expm1(-2 * eta * h))
            if sigma_up > 0:
                noise = noise_fn(sigma, sigma_next)
                x_next = x_next + noise * s_noise * sigma_up
            terms |= {"h": h, "phi_2": phi_2, "phi_3": phi_3, "sigma_up": sigma_up}
        emit_step(
            on_event, "dpmpp_3m_sde", i, sigmas, x, x_next, denoised, DPMPP_3M_SDE_FORMULA, noise, **terms
        )
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
        x = x_next
    return x


# ---------------------------------------------------------------- registry

# ComfyUI's *_gpu names keep the Brownian tree on the device; the maths is the same, so they are aliases.
register(
    sample_dpmpp_2m,
    "DPM++ 2M",
    aliases=("k_dpmpp_2m", "dpmpp_2m"),
    description="Second-order multistep solver in the data prediction: one model call per step.",
    formula=DPMPP_2M_FORMULA,
    reference="Lu et al. 2022, DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
    default_schedule="Karras",
)
register(
    sample_dpmpp_sde,
    "DPM++ SDE",
    aliases=("k_dpmpp_sde", "dpmpp_sde", "dpmpp_sde_gpu"),
    description="Stochastic second-order singlestep solver (midpoint r = 1/2) with Brownian-tree noise.",
    formula=DPMPP_SDE_FORMULA,
    reference="Lu et al. 2022b (DPM-Solver++), stochastic variant by Katherine Crowson in k-diffusion",
    default_schedule="Karras",
    second_order=True,
    stochastic=True,
    brownian=True,
)
register(
    sample_dpmpp_2m_sde,
    "DPM++ 2M SDE",
    aliases=("k_dpmpp_2m_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu"),
    description="Second-order multistep SDE solver (midpoint correction) with Brownian-tree noise.",
    formula=DPMPP_2M_SDE_FORMULA,
    reference="Lu et al. 2022b (DPM-Solver++ SDE), as k-diffusion's sample_dpmpp_2m_sde",
    default_schedule="Exponential",
    stochastic=True,
    brownian=True,
)
register(
    sample_dpmpp_2m_sde,
    "DPM++ 2M SDE Heun",
    aliases=("k_dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu"),
    description="DPM++ 2M SDE with the Heun-type correction coefficient 1 − (1 − e^{−h_η})/h_η.",
    formula=DPMPP_2M_SDE_FORMULA,
    reference="Lu et al. 2022b (DPM-Solver++ SDE), as k-diffusion's sample_dpmpp_2m_sde(solver_type='heun')",
    default_schedule="Exponential",
    defaults={"solver_type": "heun"},
    stochastic=True,
    brownian=True,
)
register(
    sample_dpmpp_2s_ancestral,
    "DPM++ 2S a",
    aliases=("k_dpmpp_2s_a", "dpmpp_2s_ancestral"),
    description="Second-order singlestep solver to σ_down plus fresh noise σ_up each step (ancestral).",
    formula=DPMPP_2S_A_FORMULA,
    reference="Lu et al. 2022b (DPM-Solver++(2S)), ancestral form as k-diffusion's sample_dpmpp_2s_ancestral",
    default_schedule="Karras",
    second_order=True,
    stochastic=True,
)
register(
    sample_dpmpp_3m_sde,
    "DPM++ 3M SDE",
    aliases=("k_dpmpp_3m_sde", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu"),
    description="Three-step multistep SDE solver with Brownian-tree noise; one model call per step.",
    formula=DPMPP_3M_SDE_FORMULA,
    reference="Lu et al. 2022b (DPM-Solver++ SDE, 3M multistep), as k-diffusion's sample_dpmpp_3m_sde",
    default_schedule="Exponential",
    discard_penultimate_sigma=True,
    stochastic=True,
    brownian=True,
)
register(
    sample_dpm_fast,
    "DPM fast",
    aliases=("k_dpm_fast", "dpm_fast"),
    description="DPM-Solver-fast: a fixed budget of N model calls in steps of order 3 uniform in log σ; "
    "ends at σ_min. η = 1 (A1111's default) adds ancestral noise; ComfyUI runs η = 0.",
    formula=DPM_FAST_FORMULA,
    reference="Lu et al. 2022, DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling"
    " (§3.4, DPM-Solver-fast)",
    stochastic=True,
)
register(
    sample_dpm_adaptive,
    "DPM adaptive",
    aliases=("k_dpm_ad", "dpm_adaptive"),
    description="DPM-Solver-3 with adaptive step size (ignores the step count); ends at σ_min. "
    "η = 1 (A1111's default) adds ancestral noise; ComfyUI runs η = 0.",
    formula=DPM_ADAPTIVE_FORMULA,
    reference="Lu et al. 2022, DPM-Solver, §3.5 (adaptive step size), PID control as in k-diffusion",
    stochastic=True,
)
