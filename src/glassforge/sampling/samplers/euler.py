"""Euler-family samplers (k-diffusion's first-order and Karras et al.'s second-order ODE steps)."""

from __future__ import annotations

from ._common import ancestral_step, batch_sigma, churn, emit_step, register, step_noise, to_d

EULER_FORMULA = "x_{i+1} = x_i + (σ_{i+1} − σ̂_i)·(x_i − D(x_i, σ̂_i))/σ̂_i"


def sample_euler(
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
    """Euler steps of the probability-flow ODE, with optional churn (Karras et al. 2022, Alg. 2)."""
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x_in = x
        x, sigma_hat, gamma, noise = churn(x, sigma, n, generator, s_churn, s_tmin, s_tmax, s_noise)
        denoised = denoiser(x, batch_sigma(x, sigma_hat))
        d = to_d(x, sigma_hat, denoised)
        dt = sigma_next - sigma_hat
        x_next = x + d * dt
        emit_step(
            on_event,
            "euler",
            i,
            sigmas,
            x_in,
            x_next,
            denoised,
            EULER_FORMULA,
            noise,
            sigma_hat=sigma_hat,
            dt=dt,
            gamma=gamma,
        )
        x = x_next
    return x


def sample_euler_ancestral(denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0):
    """Euler step down to σ_down, then fresh noise up to σ_{i+1} (Song et al. 2021; k-diffusion)."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x_next = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        noise = None
        if sigma_next > 0 and sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + noise * s_noise * sigma_up
        emit_step(
            on_event,
            "euler_ancestral",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            "x_{i+1} = x_i + (σ_down − σ_i)·(x_i − D_i)/σ_i + σ_up·z",
            noise,
            sigma_down=sigma_down,
            sigma_up=sigma_up,
        )
        x = x_next
    return x


register(
    sample_euler,
    "Euler",
    aliases=("k_euler", "euler"),
    description="First-order ODE solver: one model call per step, deterministic.",
    formula=EULER_FORMULA,
    reference="Karras et al. 2022, Elucidating the Design Space of Diffusion-Based Generative Models, Alg. 2",
)
register(
    sample_euler_ancestral,
    "Euler a",
    aliases=("k_euler_a", "k_euler_ancestral", "euler_ancestral"),
    description="Euler with fresh noise each step (ancestral); does not converge to one image as steps grow.",
    formula="(σ_down, σ_up) = ancestral(σ_i, σ_{i+1}, η); x_{i+1} = x_i + (σ_down − σ_i)·d_i + σ_up·z",
    reference="Song et al. 2021 (DDIM η), as k-diffusion's sample_euler_ancestral",
    stochastic=True,
)
