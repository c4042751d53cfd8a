"""Second-order ODE samplers in σ: Heun, DPM2 (midpoint), their ancestral form, Heun++ and Restart."""

from __future__ import annotations

import itertools
import math

import torch

from ._common import ancestral_step, batch_sigma, churn, emit_step, register, step_noise, to_d

HEUN_FORMULA = (
    "d̂ = (x̂ − D(x̂, σ̂))/σ̂; x′ = x̂ + (σ_{i+1} − σ̂)·d̂; d′ = (x′ − D(x′, σ_{i+1}))/σ_{i+1}; "
    "x_{i+1} = x̂ + (σ_{i+1} − σ̂)·(d̂ + d′)/2   (Euler step when σ_{i+1} = 0)"
)
DPM2_FORMULA = (
    "σ_mid = sqrt(σ̂·σ_{i+1}); x_mid = x̂ + (σ_mid − σ̂)·d̂; "
    "x_{i+1} = x̂ + (σ_{i+1} − σ̂)·(x_mid − D(x_mid, σ_mid))/σ_mid   (Euler step when σ_{i+1} = 0)"
)
DPM2_A_FORMULA = (
    "(σ_down, σ_up) = ancestral(σ_i, σ_{i+1}, η); σ_mid = sqrt(σ_i·σ_down); x_mid = x_i + (σ_mid − σ_i)·d_i; "
    "x_{i+1} = x_i + (σ_down − σ_i)·(x_mid − D(x_mid, σ_mid))/σ_mid + σ_up·z"
)
HEUNPP2_FORMULA = (
    "x′ = x̂ + (σ_{i+1} − σ̂)·d̂; x″ = x′ + (σ_{i+2} − σ_{i+1})·d′; "
    "x_{i+1} = x̂ + (σ_{i+1} − σ̂)·(w₁·d̂ + w₂·d′ + w₃·d″), "
    "w₂ = σ_{i+1}/(3σ_0), w₃ = σ_{i+2}/(3σ_0), w₁ = 1 − w₂ − w₃   "
    "(Heun with w₂ = σ_{i+1}/(2σ_0), w₃ = 0 when σ_{i+2} is the last σ; Euler on the last step)"
)
RESTART_FORMULA = (
    "Heun steps on a Karras schedule; at σ ≈ 0.1 jump back to σ ≈ 2 with "
    "x ← x + sqrt(σ_hi² − σ_lo²)·z and descend again (Heun steps on a Karras sub-schedule)"
)


def sample_heun(
    denoiser,
    x,
    sigmas,
    *,
    generator=None,
    on_event=None,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
):
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 2)."""
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x_in = x
        x, sigma_hat, gamma, noise = churn(x, sigma, n, generator, s_churn, s_tmin, s_tmax, s_noise)
        denoised = denoiser(x, batch_sigma(x, sigma_hat))
        d = to_d(x, sigma_hat, denoised)
        dt = sigma_next - sigma_hat
        x_euler = x + d * dt
        if sigma_next == 0:
            x_next = x_euler
        else:
            d_2 = to_d(x_euler, sigma_next, denoiser(x_euler, batch_sigma(x, sigma_next)))
            x_next = x + (d + d_2) * (dt / 2)
        terms = {"sigma_hat": sigma_hat, "dt": dt, "gamma": gamma}
        emit_step(on_event, "heun", i, sigmas, x_in, x_next, denoised, HEUN_FORMULA, noise, **terms)
        x = x_next
    return x


def sample_dpm_2(
    denoiser,
    x,
    sigmas,
    *,
    generator=None,
    on_event=None,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
):
    """DPM-Solver-2 in σ: midpoint step at the geometric mean σ (Karras et al. 2022, after Lu et al. 2022)."""
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x_in = x
        x, sigma_hat, gamma, noise = churn(x, sigma, n, generator, s_churn, s_tmin, s_tmax, s_noise)
        denoised = denoiser(x, batch_sigma(x, sigma_hat))
        d = to_d(x, sigma_hat, denoised)
        dt = sigma_next - sigma_hat
        if sigma_next == 0:
            sigma_mid = 0.0
            x_next = x + d * dt
        else:
            sigma_mid = math.exp(0.5 * (math.log(sigma_hat) + math.log(sigma_next)))
            x_mid = x + d * (sigma_mid - sigma_hat)
            d_mid = to_d(x_mid, sigma_mid, denoiser(x_mid, batch_sigma(x, sigma_mid)))
            x_next = x + d_mid * dt
        terms = {"sigma_hat": sigma_hat, "sigma_mid": sigma_mid, "dt": dt, "gamma": gamma}
        emit_step(on_event, "dpm_2", i, sigmas, x_in, x_next, denoised, DPM2_FORMULA, noise, **terms)
        x = x_next
    return x


def sample_dpm_2_ancestral(denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0):
    """DPM2 midpoint step down to σ_down, then fresh noise up to σ_{i+1} (k-diffusion)."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        d = to_d(x, sigma, denoised)
        if sigma_down == 0:
            sigma_mid = 0.0
            x_next = x + d * (sigma_down - sigma)
        else:
            sigma_mid = math.exp(0.5 * (math.log(sigma) + math.log(sigma_down)))
            x_mid = x + d * (sigma_mid - sigma)
            d_mid = to_d(x_mid, sigma_mid, denoiser(x_mid, batch_sigma(x, sigma_mid)))
            x_next = x + d_mid * (sigma_down - sigma)
        noise = None
        if sigma_next > 0 and sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + noise * s_noise * sigma_up
        terms = {"sigma_down": sigma_down, "sigma_up": sigma_up, "sigma_mid": sigma_mid}
        emit_step(on_event, "dpm_2_ancestral", i, sigmas, x, x_next, denoised, DPM2_A_FORMULA, noise, **terms)
        x = x_next
    return x


def sample_heunpp2(
    denoiser,
    x,
    sigmas,
    *,
    generator=None,
    on_event=None,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
):
    """Heun++: Heun plus a third look-ahead slope, weighted by σ/σ_0 (Carzit, sd-webui-samplers-scheduler)."""
    n = len(sigmas) - 1
    s_end, sigma_0 = float(sigmas[-1]), float(sigmas[0])
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x_in = x
        x, sigma_hat, gamma, noise = churn(x, sigma, n, generator, s_churn, s_tmin, s_tmax, s_noise)
        denoised = denoiser(x, batch_sigma(x, sigma_hat))
        d = to_d(x, sigma_hat, denoised)
        dt = sigma_next - sigma_hat
        x_2 = x + d * dt
        w1, w2, w3 = 1.0, 0.0, 0.0
        if sigma_next != s_end:  # at least a Heun step: slope at the Euler end point
            d_2 = to_d(x_2, sigma_next, denoiser(x_2, batch_sigma(x, sigma_next)))
            sigma_after = float(sigmas[i + 2])
            if sigma_after == s_end:  # Heun step with weights 1 − σ_{i+1}/(2σ_0), σ_{i+1}/(2σ_0)
                w2 = sigma_next / (2 * sigma_0)
                w1 = 1 - w2
                d_prime = w1 * d + w2 * d_2
            else:  # Heun++: one more Euler step from x′ gives a third slope
                x_3 = x_2 + d_2 * (sigma_after - sigma_next)
                d_3 = to_d(x_3, sigma_after, denoiser(x_3, batch_sigma(x, sigma_after)))
                w2, w3 = sigma_next / (3 * sigma_0), sigma_after / (3 * sigma_0)
                w1 = 1 - w2 - w3
                d_prime = w1 * d + w2 * d_2 + w3 * d_3
            x_next = x + d_prime * dt
        else:
            x_next = x_2
        terms = {"sigma_hat": sigma_hat, "dt": dt, "gamma": gamma, "w1": w1, "w2": w2, "w3": w3}
        emit_step(on_event, "heunpp2", i, sigmas, x_in, x_next, denoised, HEUNPP2_FORMULA, noise, **terms)
        x = x_next
    return x


# ---------------------------------------------------------------- Restart


def _karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0):
    """n Karras et al. (2022) noise levels from σ_max down to σ_min (no appended zero), float64."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def restart_segments(sigmas, restart_list=None) -> list[tuple[float, float]]:
    """The (σ_from, σ_to) segments Restart walks, A1111's rule for choosing restarts.

    ``restart_list`` maps σ_lo → (points, times, σ_hi): after reaching the schedule entry nearest
    σ_lo, jump back to the entry nearest σ_hi and re-descend ``times`` times over a Karras
    sub-schedule of ``points`` values. Without it, for ≥ 20 steps the schedule is rebuilt as Karras
    with fewer points so that the total stays ``steps``, with restarts {0.1: (steps_r + 1, times, 2)}.
    """
    steps = len(sigmas) - 1
    sigmas = sigmas.to(torch.float64)
    if restart_list is None:
        restart_list = {}
        if steps >= 20:
            restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
            ends_in_zero = float(sigmas[-1]) == 0
            lo = float(sigmas[-2] if ends_in_zero else sigmas[-1])
            main = _karras(steps - restart_steps * restart_times, lo, float(sigmas[0]))
            sigmas = torch.cat([main, sigmas.new_zeros(1)]) if ends_in_zero else main
            restart_list = {0.1: (restart_steps + 1, restart_times, 2.0)}
    by_index = {int((sigmas - key).abs().argmin()): value for key, value in restart_list.items()}
    segments = []
    for i in range(len(sigmas) - 1):
        segments.append((float(sigmas[i]), float(sigmas[i + 1])))
        if i + 1 in by_index:
            points, times, sigma_hi = by_index[i + 1]
            hi_index = int((sigmas - sigma_hi).abs().argmin())
            if hi_index < i + 1:
                sub = [float(s) for s in _karras(points, float(sigmas[i + 1]), float(sigmas[hi_index]))]
                for _ in range(times):
                    segments.extend(itertools.pairwise(sub))
    return segments


def sample_restart(denoiser, x, sigmas, *, generator=None, on_event=None, s_noise=1.0, restart_list=None):
    """Restart sampling: Heun descents with noisy jumps back up (Xu et al. 2023), as A1111 runs it."""
    segments = restart_segments(sigmas, restart_list)
    if not segments:
        return x
    noise_fn = step_noise(x, generator)
    # Event σ chain: step k starts where step k − 1 ended; a restart jump shows as σ̂ > σ (like churn).
    chain = torch.tensor([segments[0][0]] + [b for _, b in segments], dtype=torch.float64)
    for k, (sigma_from, sigma_to) in enumerate(segments):
        sigma_prev = float(chain[k])
        x_in, noise = x, None
        if sigma_from > sigma_prev:
            noise = noise_fn(sigma_prev, sigma_from)
            x = x + noise * s_noise * math.sqrt(sigma_from**2 - sigma_prev**2)
        denoised = denoiser(x, batch_sigma(x, sigma_from))
        d = to_d(x, sigma_from, denoised)
        dt = sigma_to - sigma_from
        x_next = x + d * dt
        if sigma_to != 0:
            d_2 = to_d(x_next, sigma_to, denoiser(x_next, batch_sigma(x, sigma_to)))
            x_next = x + (d + d_2) * (dt / 2)
        terms = {"sigma_hat": sigma_from, "dt": dt, "restart": float(noise is not None)}
        emit_step(on_event, "restart", k, chain, x_in, x_next, denoised, RESTART_FORMULA, noise, **terms)
        x = x_next
    return x


register(
    sample_heun,
    "Heun",
    aliases=("k_heun", "heun"),
    description="Second-order ODE solver (trapezoid rule): two model calls per step, one on the last.",
    formula=HEUN_FORMULA,
    reference="Karras et al. 2022, Elucidating the Design Space of Diffusion-Based Generative Models, Alg. 2",
    second_order=True,
)
register(
    sample_dpm_2,
    "DPM2",
    aliases=("k_dpm_2", "dpm_2"),
    description="Second-order midpoint ODE solver; the midpoint σ is the geometric mean of the step's ends.",
    formula=DPM2_FORMULA,
    reference="Karras et al. 2022 (DPM-Solver-2 of Lu et al. 2022 in σ), as k-diffusion's sample_dpm_2",
    default_schedule="Karras",
    second_order=True,
    discard_penultimate_sigma=True,
)
register(
    sample_dpm_2_ancestral,
    "DPM2 a",
    aliases=("k_dpm_2_a", "dpm_2_ancestral"),
    description="DPM2 midpoint step to σ_down plus fresh noise σ_up each step (ancestral).",
    formula=DPM2_A_FORMULA,
    reference="k-diffusion's sample_dpm_2_ancestral (DPM2 of Karras et al. 2022 with ancestral noise)",
    default_schedule="Karras",
    second_order=True,
    discard_penultimate_sigma=True,
    stochastic=True,
)
register(
    sample_heunpp2,
    "HeunPP2",
    aliases=("heunpp2",),
    description="Heun with a third slope from one more Euler look-ahead, weighted by σ; 3 calls per step.",
    formula=HEUNPP2_FORMULA,
    reference="Carzit, sd-webui-samplers-scheduler (Heun++), as ComfyUI's sample_heunpp2",
    second_order=True,
)
register(
    sample_restart,
    "Restart",
    aliases=("restart",),
    description="Heun descents; from 20 steps on, noise jumps back from σ≈0.1 to σ≈2 and descends again.",
    formula=RESTART_FORMULA,
    reference="Xu et al. 2023, Restart Sampling for Improving Generative Processes; A1111's restart_sampler",
    default_schedule="Karras",
    second_order=True,
    # not ``stochastic``: A1111 does not mark Restart uses_ensd, though its restart noise comes from
    # the per-image generators
)
