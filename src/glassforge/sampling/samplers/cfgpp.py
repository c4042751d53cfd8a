"""CFG++ samplers: the denoised estimate from the guided prediction, the re-noising direction from the
unconditional one (Chung et al. 2024, CFG++: Manifold-constrained Classifier Free Guidance).

Each takes both estimates through :func:`guided_and_uncond`; with a plain denoiser (no unconditional
branch) both are the same and every sampler here reduces exactly to its base sampler. Guidance scales for
CFG++ live in [0, 1]-ish (ComfyUI: set CFG ≈ 1; A1111's DDIM CFG++ divides the CFG scale by 12.5).
"""

from __future__ import annotations

import math

from ._common import ancestral_step, batch_sigma, emit_step, guided_and_uncond, register, step_noise
from .multistep import RES_CFGPP_FORMULA, res_multistep
from .timestep import ddim_sigma_up

EULER_CFGPP_FORMULA = "x_{i+1} = D^g_i + σ_{i+1}·(x_i − D^u_i)/σ_i"


def sample_euler_cfg_pp(denoiser, x, sigmas, *, generator=None, on_event=None):
    """Euler with CFG++: step to σ_{i+1} from the guided x0 along the unconditional ε (Chung et al. 2024)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised, uncond = guided_and_uncond(denoiser, x, batch_sigma(x, sigma))
        x_next = denoised + sigma_next * (x - uncond) / sigma
        emit_step(on_event, "euler_cfg_pp", i, sigmas, x, x_next, denoised, EULER_CFGPP_FORMULA)
        x = x_next
    return x


def sample_euler_ancestral_cfg_pp(
    denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0
):
    """Euler ancestral with CFG++: guided x0, unconditional ε down to σ_down, then σ_up·z."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised, uncond = guided_and_uncond(denoiser, x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x_next = denoised + sigma_down * (x - uncond) / sigma
        noise = None
        if sigma_next > 0 and sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + noise * s_noise * sigma_up
        emit_step(
            on_event,
            "euler_ancestral_cfg_pp",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            "x_{i+1} = D^g_i + σ_down·(x_i − D^u_i)/σ_i + σ_up·z",
            noise,
            sigma_down=sigma_down,
            sigma_up=sigma_up,
        )
        x = x_next
    return x


DPMPP_2M_CFGPP_FORMULA = (
    "h = ln(σ_i/σ_{i+1}), r = ln(σ_{i−1}/σ_i)/h;  x_{i+1} = D^g_i + (σ_{i+1}/σ_i)·(x_i − D^u_i)"
    " + (1 − σ_{i+1}/σ_i)/(2r)·(D^g_i − D^u_{i−1})"
)


def sample_dpmpp_2m_cfg_pp(denoiser, x, sigmas, *, generator=None, on_event=None):
    """DPM-Solver++(2M) with CFG++ (Lu et al. 2022; Chung et al. 2024); the history is the unconditional D."""
    old_uncond, old_sigma = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised, uncond = guided_and_uncond(denoiser, x, batch_sigma(x, sigma))
        ratio = sigma_next / sigma
        x_next = denoised + ratio * (x - uncond)
        terms = {"ratio": ratio}
        if old_uncond is not None and sigma_next > 0:
            h = math.log(sigma / sigma_next)
            r = math.log(old_sigma / sigma) / h
            x_next = x_next + (1 - ratio) / (2 * r) * (denoised - old_uncond)
            terms.update(h=h, r=r)
        emit_step(
            on_event, "dpmpp_2m_cfg_pp", i, sigmas, x, x_next, denoised, DPMPP_2M_CFGPP_FORMULA, **terms
        )
        old_uncond, old_sigma = uncond, sigma
        x = x_next
    return x


DPMPP_2S_A_CFGPP_FORMULA = (
    "σ_s = sqrt(σ_i·σ_down); u = D^g_i + (σ_s/σ_i)·(x_i − D^u_i);"
    "  x_{i+1} = (σ_down/σ_i)·(x_i − D^u_i + D^g_i) + (1 − σ_down/σ_i)·D^g(u, σ_s) + σ_up·z"
)


def sample_dpmpp_2s_ancestral_cfg_pp(
    denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0
):
    """DPM-Solver++(2S) ancestral with CFG++: midpoint at σ_s = sqrt(σ_i·σ_down), re-noised along D^u_i."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised, uncond = guided_and_uncond(denoiser, x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        terms = {"sigma_down": sigma_down, "sigma_up": sigma_up}
        if sigma_down == 0:
            x_next = denoised  # Euler to 0 along the unconditional ε: D^g + 0·ε^u
        else:
            sigma_s = math.sqrt(sigma * sigma_down)
            u = denoised + (sigma_s / sigma) * (x - uncond)
            denoised_2 = guided_and_uncond(denoiser, u, batch_sigma(x, sigma_s))[0]
            ratio = sigma_down / sigma
            x_next = ratio * (x - uncond + denoised) + (1 - ratio) * denoised_2
            terms.update(sigma_s=sigma_s, ratio=ratio)
        noise = None
        if sigma_next > 0 and sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + noise * s_noise * sigma_up
        emit_step(
            on_event,
            "dpmpp_2s_ancestral_cfg_pp",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            DPMPP_2S_A_CFGPP_FORMULA,
            noise,
            **terms,
        )
        x = x_next
    return x


def sample_res_multistep_cfg_pp(denoiser, x, sigmas, *, generator=None, on_event=None, s_noise=1.0):
    """RES multistep with CFG++ (deterministic)."""
    return res_multistep(
        denoiser, x, sigmas, generator=generator, on_event=on_event, eta=0.0, s_noise=s_noise, cfg_pp=True
    )


def sample_res_multistep_ancestral_cfg_pp(
    denoiser, x, sigmas, *, generator=None, on_event=None, eta=1.0, s_noise=1.0
):
    """Ancestral RES multistep with CFG++."""
    return res_multistep(
        denoiser, x, sigmas, generator=generator, on_event=on_event, eta=eta, s_noise=s_noise, cfg_pp=True
    )


DDIM_CFGPP_FORMULA = (
    "(D^g, D^u) at CFG scale × scale_factor (1/12.5);"
    "  x_{i+1} = D^g_i + sqrt(σ_{i+1}² − σ_up²)·(x_i − D^u_i)/σ_i + σ_up·z"
)


def sample_ddim_cfgpp(denoiser, x, sigmas, *, generator=None, on_event=None, eta=0.0, scale_factor=1 / 12.5):
    """DDIM with CFG++ as A1111's "DDIM CFG++": guidance scale × 1/12.5, x̂0 guided, ε̂ unconditional."""
    noise_fn = step_noise(x, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised, uncond = guided_and_uncond(denoiser, x, batch_sigma(x, sigma), scale_factor)
        sigma_up = ddim_sigma_up(sigma, sigma_next, eta)
        direction = math.sqrt(max(sigma_next**2 - sigma_up**2, 0.0))
        x_next = denoised + direction * (x - uncond) / sigma
        noise = None
        if sigma_up > 0:
            noise = noise_fn(sigma, sigma_next)
            x_next = x_next + sigma_up * noise
        emit_step(
            on_event,
            "ddim_cfgpp",
            i,
            sigmas,
            x,
            x_next,
            denoised,
            DDIM_CFGPP_FORMULA,
            noise,
            eta=eta,
            sigma_up=sigma_up,
            direction=direction,
            scale_factor=scale_factor,
        )
        x = x_next
    return x


CFGPP_REFERENCE = (
    "Chung, Kim, Park, Nam & Ye 2024, CFG++: Manifold-constrained Classifier Free Guidance for Diffusion "
    "Models, arXiv 2406.08070"
)
CFGPP_NOTE = " Uses the unconditional prediction separately; use a low CFG scale (about 0.5–2)."

register(
    sample_euler_cfg_pp,
    "Euler CFG++",
    aliases=("euler_cfg_pp",),
    description="Euler where x0 comes from the guided prediction and the re-noising direction from the "
    "unconditional one." + CFGPP_NOTE,
    formula=EULER_CFGPP_FORMULA,
    reference=CFGPP_REFERENCE,
    needs_uncond=True,
)
register(
    sample_euler_ancestral_cfg_pp,
    "Euler a CFG++",
    aliases=("euler_ancestral_cfg_pp",),
    description="Euler ancestral with CFG++ (guided x0, unconditional direction, fresh noise σ_up)."
    + CFGPP_NOTE,
    formula="x_{i+1} = D^g_i + σ_down·(x_i − D^u_i)/σ_i + σ_up·z",
    reference=CFGPP_REFERENCE,
    stochastic=True,
    needs_uncond=True,
)
register(
    sample_dpmpp_2m_cfg_pp,
    "DPM++ 2M CFG++",
    aliases=("dpmpp_2m_cfg_pp",),
    description="DPM-Solver++(2M) with CFG++; the second-order correction uses the previous unconditional "
    "estimate, as ComfyUI's dpmpp_2m_cfg_pp." + CFGPP_NOTE,
    formula=DPMPP_2M_CFGPP_FORMULA,
    reference=CFGPP_REFERENCE + "; Lu et al. 2022, DPM-Solver++",
    needs_uncond=True,
)
register(
    sample_dpmpp_2s_ancestral_cfg_pp,
    "DPM++ 2S a CFG++",
    aliases=("dpmpp_2s_ancestral_cfg_pp",),
    description="DPM-Solver++(2S) ancestral with CFG++ (two model calls per step)." + CFGPP_NOTE,
    formula=DPMPP_2S_A_CFGPP_FORMULA,
    reference=CFGPP_REFERENCE + "; Lu et al. 2022, DPM-Solver++",
    second_order=True,
    stochastic=True,
    needs_uncond=True,
)
register(
    sample_res_multistep_cfg_pp,
    "res_multistep_cfg_pp",
    description="RES multistep with CFG++ (ComfyUI name)." + CFGPP_NOTE,
    formula=RES_CFGPP_FORMULA,
    reference=CFGPP_REFERENCE + "; RES, arXiv 2308.02157",
    needs_uncond=True,
)
register(
    sample_res_multistep_ancestral_cfg_pp,
    "res_multistep_ancestral_cfg_pp",
    description="Ancestral RES multistep with CFG++ (ComfyUI name)." + CFGPP_NOTE,
    formula=RES_CFGPP_FORMULA,
    reference=CFGPP_REFERENCE + "; RES, arXiv 2308.02157",
    stochastic=True,
    needs_uncond=True,
)
register(
    sample_ddim_cfgpp,
    "DDIM CFG++",
    aliases=("ddim_cfgpp",),
    description="A1111's DDIM CFG++: the CFG scale is multiplied by 1/12.5 (CFG 0…12.5 → 0…1), x̂0 from the "
    "guided prediction, the direction from the unconditional ε. Runs over any σ schedule (default DDIM).",
    formula=DDIM_CFGPP_FORMULA,
    reference=CFGPP_REFERENCE + "; A1111 sd_samplers_timesteps_impl (DDIM CFG++)",
    default_schedule="DDIM",
    needs_uncond=True,
)
