"""Exact identities between samplers, and against textbook VP-space updates computed here independently.

* DDIM(η = 0) is Euler in σ-space, and equals the textbook DDIM update on ᾱ = 1/(1 + σ²) with
  x_vp = x/sqrt(1 + σ²), using a VP-form posterior mean written out in this file (math §5.1, §5.4).
* DDIM(η = 1), DDPM and Euler a are one step (the DDPM posterior), with the same injected noise.
* LCM, DDPM and the CFG++ family against their formulas; CFG++ with a plain denoiser is its base sampler.
* SEEDS / exponential Heun: η = 0 is DPM-Solver++(2S); with η > 0 the noise continued across the stages
  has the SDE's variance, so for a point mass (D ≡ μ) every step maps N(μ, σ²) to N(μ, σ′²) exactly.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from glassforge.sampling.noise_schedule import DiscreteSchedule
from glassforge.sampling.samplers import SAMPLERS
from glassforge.sampling.samplers._common import ancestral_step
from glassforge.toy import GaussianMixture

SIGMA_MAX, SIGMA_MIN = 14.614642, 0.0291675
MIXTURE = GaussianMixture.create([[-1.0, 0.5], [1.5, -0.5], [0.2, 1.8]], [0.3, 0.5, 0.4], [0.3, 0.5, 0.2])
UNCOND = GaussianMixture.create([[0.0, 0.0], [2.0, 1.0]], [0.8, 0.6], [0.6, 0.4])
X_T = MIXTURE.sample_noisy(16, SIGMA_MAX, torch.Generator().manual_seed(4))


def karras(n: int, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    sigmas = (SIGMA_MAX ** (1 / rho) + ramp * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def a1111_ddim_sigmas(steps: int) -> torch.Tensor:
    """σ at A1111's DDIM timesteps 1, 1 + 1000//steps, …, descending (the loop stops at t = 1)."""
    table = DiscreteSchedule.stable_diffusion().alphas_cumprod.double()
    timesteps = list(range(0, 1000, 1000 // steps))
    abar = table[[t + 1 for t in timesteps]].flip(0)
    return ((1 - abar) / abar).sqrt()


def vp_posterior_mean(gm: GaussianMixture, x_t: torch.Tensor, abar: float) -> torch.Tensor:
    """E[x0 | x_t] for x_t = sqrt(ᾱ)·x0 + sqrt(1 − ᾱ)·ε and isotropic components (math §5.1, VP form)."""
    a = math.sqrt(abar)
    var = abar * gm.stds**2 + (1 - abar)  # [K]
    sq = ((x_t[:, None, :] - a * gm.means[None]) ** 2).sum(-1)  # [N, K]
    logp = gm.weights.log() - 0.5 * sq / var - 0.5 * gm.dim * torch.log(2 * math.pi * var)
    w = torch.softmax(logp, dim=-1)
    per_k = gm.means[None] + (a * gm.stds**2 / var)[None, :, None] * (x_t[:, None, :] - a * gm.means[None])
    return (w[..., None] * per_k).sum(1)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-12) -> bool:
    return bool(((a - b).abs() <= tol * (1 + b.abs())).all())


def run(name, denoiser, sigmas, x=X_T, seed=None, **options):
    events = []
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    out = SAMPLERS[name](denoiser, x.clone(), sigmas, generator=generator, on_event=events.append, **options)
    return out, events


# ---------------------------------------------------------------- DDIM


@pytest.mark.parametrize("sigmas", [karras(12), a1111_ddim_sigmas(20)], ids=["karras", "a1111-ddim-grid"])
def test_ddim_eta0_is_euler(sigmas):
    ddim, _ = run("DDIM", MIXTURE, sigmas)
    euler, _ = run("Euler", MIXTURE, sigmas)
    assert close(ddim, euler)


def test_ddim_eta0_equals_textbook_vp_ddim():
    sigmas = a1111_ddim_sigmas(20)
    abars = (1 / (1 + sigmas**2)).tolist()
    x_vp = torch.randn(
        X_T.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )  # A1111: unit noise
    ours, _ = run("DDIM", MIXTURE, sigmas, x=x_vp * math.sqrt(1 + float(sigmas[0]) ** 2))
    for abar, abar_prev in itertools.pairwise(abars):
        x0 = vp_posterior_mean(MIXTURE, x_vp, abar)
        eps = (x_vp - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
        x_vp = math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps
    assert close(ours / math.sqrt(1 + float(sigmas[-1]) ** 2), x_vp, 1e-10)


def test_ddim_eta1_noise_is_the_ancestral_sigma_up_and_equals_euler_a():
    sigmas = karras(10)
    ddim, events = run("DDIM", MIXTURE, sigmas, seed=7, eta=1.0)
    euler_a, _ = run("Euler a", MIXTURE, sigmas, seed=7)
    assert close(ddim, euler_a, 1e-11)
    for ev in events:
        s, s_next = ev.sigma, ev.sigma_next
        abar, abar_next = 1 / (1 + s**2), 1 / (1 + s_next**2)
        ddim_var_vp = (1 - abar_next) / (1 - abar) * (1 - abar / abar_next)  # Song et al. 2021 σ_t², η = 1
        assert ev.terms["sigma_up"] ** 2 == pytest.approx(ddim_var_vp / abar_next, rel=1e-10, abs=1e-300)
        assert ev.terms["sigma_up"] == pytest.approx(ancestral_step(s, s_next, 1.0)[1], rel=1e-10, abs=1e-300)
        if s_next > 0:
            eps = (ev.x - ev.denoised) / s
            deterministic = ev.denoised + math.sqrt(s_next**2 - ev.terms["sigma_up"] ** 2) * eps
            assert close(ev.x_next - deterministic, ev.terms["sigma_up"] * ev.noise)


def test_ddim_eta_scales_the_noise_linearly():
    _, half = run("DDIM", MIXTURE, karras(6), seed=1, eta=0.5)
    _, full = run("DDIM", MIXTURE, karras(6), seed=1, eta=1.0)
    for a, b in zip(half[:-1], full[:-1], strict=True):
        assert a.terms["sigma_up"] == pytest.approx(0.5 * b.terms["sigma_up"], rel=1e-12)


# ---------------------------------------------------------------- LCM and DDPM


def test_lcm_one_step_returns_the_denoised_estimate():
    sigmas = torch.tensor([SIGMA_MAX, 0.0], dtype=torch.float64)
    out, _ = run("LCM", MIXTURE, sigmas, seed=0)
    assert torch.equal(out, MIXTURE(X_T, torch.full((len(X_T),), SIGMA_MAX, dtype=torch.float64)))


def test_lcm_two_steps():
    sigmas = torch.tensor([SIGMA_MAX, 1.3, 0.0], dtype=torch.float64)
    out, events = run("LCM", MIXTURE, sigmas, seed=3)
    z = torch.randn(X_T.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x1 = MIXTURE(X_T, torch.full((len(X_T),), SIGMA_MAX, dtype=torch.float64)) + 1.3 * z
    assert torch.equal(events[0].noise, z)
    assert close(out, MIXTURE(x1, torch.full((len(X_T),), 1.3, dtype=torch.float64)))


def test_ddpm_step_is_the_vp_posterior_sample():
    sigmas = karras(8)
    out, events = run("DDPM", MIXTURE, sigmas, seed=5)
    for ev in events:
        abar, abar_prev = 1 / (1 + ev.sigma**2), 1 / (1 + ev.sigma_next**2)
        alpha, beta = abar / abar_prev, 1 - abar / abar_prev
        x_t = ev.x / math.sqrt(1 + ev.sigma**2)
        x0 = vp_posterior_mean(MIXTURE, x_t, abar)
        # q(x_{t−1} | x_t, x0) (Ho et al. 2020, eq. 6–7)
        mean = (math.sqrt(abar_prev) * beta / (1 - abar)) * x0 + (
            math.sqrt(alpha) * (1 - abar_prev) / (1 - abar)
        ) * x_t
        var = beta * (1 - abar_prev) / (1 - abar)
        expected = mean + (math.sqrt(var) * ev.noise if ev.noise is not None else 0)
        assert close(ev.x_next / math.sqrt(1 + ev.sigma_next**2), expected, 1e-10)
    assert events[-1].noise is None and close(out, events[-1].denoised)


def test_ddpm_equals_ddim_eta1_and_euler_a():
    sigmas = karras(9)
    ddpm, _ = run("DDPM", MIXTURE, sigmas, seed=13)
    ddim, _ = run("DDIM", MIXTURE, sigmas, seed=13, eta=1.0)
    euler_a, _ = run("Euler a", MIXTURE, sigmas, seed=13)
    assert close(ddpm, euler_a, 1e-10) and close(ddim, euler_a, 1e-10)


# ---------------------------------------------------------------- CFG++


class TinyGuider:
    """CFG over two exact mixtures: guided = D_u + w·(D_c − D_u); CFG++ samplers ask for both."""

    def __init__(self, cond: GaussianMixture, uncond: GaussianMixture, scale: float):
        self.cond, self.uncond, self.scale = cond, uncond, scale

    def __call__(self, x, sigma):
        return self.guided_and_uncond(x, sigma)[0]

    def guided_and_uncond(self, x, sigma, scale_factor=1.0):
        c, u = self.cond(x, sigma), self.uncond(x, sigma)
        return u + self.scale * scale_factor * (c - u), u


def dpmpp_2m_reference(denoiser, x, sigmas):
    """DPM-Solver++(2M) as written in math §3.1 (k-diffusion sample_dpmpp_2m)."""
    old = None
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = denoiser(x, torch.full((len(x),), s, dtype=x.dtype))
        if old is None or s_next == 0:
            mix = d
        else:
            r = math.log(float(sigmas[i - 1]) / s) / math.log(s / s_next)
            mix = (1 + 1 / (2 * r)) * d - 1 / (2 * r) * old
        x = (s_next / s) * x - math.expm1(-math.log(s / s_next) if s_next else -math.inf) * mix
        old = d
    return x


def dpmpp_2s_a_reference(denoiser, x, sigmas, generator):
    """DPM-Solver++(2S) ancestral as written in math §3.1 (k-diffusion sample_dpmpp_2s_ancestral)."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = denoiser(x, torch.full((len(x),), s, dtype=x.dtype))
        s_down, s_up = ancestral_step(s, s_next, 1.0)
        if s_down == 0:
            x = x + (x - d) / s * (s_down - s)
        else:
            h = math.log(s / s_down)
            s_mid = s * math.exp(-h / 2)
            u = (s_mid / s) * x - math.expm1(-h / 2) * d
            x = (s_down / s) * x - math.expm1(-h) * denoiser(u, torch.full((len(x),), s_mid, dtype=x.dtype))
        if s_next > 0:
            x = x + torch.randn(x.shape, generator=generator, dtype=x.dtype) * s_up
    return x


@pytest.mark.parametrize(
    ("cfgpp", "base", "options"),
    [
        ("Euler CFG++", "Euler", {}),
        ("Euler a CFG++", "Euler a", {}),
        ("res_multistep_cfg_pp", "res_multistep", {}),
        ("res_multistep_ancestral_cfg_pp", "res_multistep_ancestral", {}),
        ("DDIM CFG++", "DDIM", {}),
        ("DDIM CFG++", "DDIM", {"eta": 1.0}),
        ("DPM++ 2M CFG++", "DPM++ 2M", {}),
        ("DPM++ 2S a CFG++", "DPM++ 2S a", {}),
    ],
)
def test_cfgpp_with_plain_denoiser_is_its_base_sampler(cfgpp, base, options):
    sigmas = karras(10)
    ours, _ = run(cfgpp, MIXTURE, sigmas, seed=17, **options)
    theirs, _ = run(base, MIXTURE, sigmas, seed=17, **options)
    assert close(ours, theirs, 1e-11)


def test_cfgpp_dpmpp_bases_match_the_textbook_formulas():
    sigmas = karras(10)
    assert close(
        run("DPM++ 2M CFG++", MIXTURE, sigmas)[0], dpmpp_2m_reference(MIXTURE, X_T.clone(), sigmas), 1e-11
    )
    ours, _ = run("DPM++ 2S a CFG++", MIXTURE, sigmas, seed=19)
    reference = dpmpp_2s_a_reference(MIXTURE, X_T.clone(), sigmas, torch.Generator().manual_seed(19))
    assert close(ours, reference, 1e-11)


GUIDER = TinyGuider(MIXTURE, UNCOND, scale=0.8)


def both(x, sigma, scale_factor=1.0):
    return GUIDER.guided_and_uncond(x, torch.full((len(x),), sigma, dtype=x.dtype), scale_factor)


def test_euler_cfgpp_formula_and_it_is_not_plain_cfg():
    sigmas = karras(8)
    out, events = run("Euler CFG++", GUIDER, sigmas)
    for ev in events:
        guided, uncond = both(ev.x, ev.sigma)
        assert close(ev.x_next, guided + ev.sigma_next * (ev.x - uncond) / ev.sigma)
    assert (out - run("Euler", GUIDER, sigmas)[0]).abs().max() > 1e-3


def test_euler_ancestral_cfgpp_formula():
    _, events = run("Euler a CFG++", GUIDER, karras(8), seed=2)
    for ev in events:
        guided, uncond = both(ev.x, ev.sigma)
        s_down, s_up = ancestral_step(ev.sigma, ev.sigma_next, 1.0)
        noise = ev.noise if ev.noise is not None else 0
        assert close(ev.x_next, guided + s_down * (ev.x - uncond) / ev.sigma + s_up * noise)


def test_ddim_cfgpp_formula_with_a1111_scale_factor():
    _, events = run("DDIM CFG++", GUIDER, karras(8))
    for ev in events:
        guided, uncond = both(ev.x, ev.sigma, 1 / 12.5)
        assert close(ev.denoised, guided)
        assert close(ev.x_next, guided + ev.sigma_next * (ev.x - uncond) / ev.sigma)
    assert not close(events[0].denoised, both(events[0].x, events[0].sigma)[0], 1e-6)


def test_dpmpp_2m_cfgpp_formula():
    _, events = run("DPM++ 2M CFG++", GUIDER, karras(8))
    prev = None
    for ev in events:
        guided, uncond = both(ev.x, ev.sigma)
        ratio = ev.sigma_next / ev.sigma
        expected = guided + ratio * (ev.x - uncond)
        if prev is not None and ev.sigma_next > 0:
            r = math.log(prev[0] / ev.sigma) / math.log(ev.sigma / ev.sigma_next)
            expected = expected + (1 - ratio) / (2 * r) * (guided - prev[1])
        assert close(ev.x_next, expected)
        prev = (ev.sigma, uncond)


def test_dpmpp_2s_ancestral_cfgpp_formula():
    _, events = run("DPM++ 2S a CFG++", GUIDER, karras(8), seed=4)
    for ev in events:
        guided, uncond = both(ev.x, ev.sigma)
        s_down, s_up = ancestral_step(ev.sigma, ev.sigma_next, 1.0)
        if s_down == 0:
            expected = guided
        else:
            s_mid = math.sqrt(ev.sigma * s_down)
            mid_guided, _ = both(guided + (s_mid / ev.sigma) * (ev.x - uncond), s_mid)
            expected = (s_down / ev.sigma) * (ev.x - uncond + guided) + (1 - s_down / ev.sigma) * mid_guided
        noise = ev.noise if ev.noise is not None else 0
        assert close(ev.x_next, expected + s_up * noise)


def test_res_multistep_cfgpp_formula():
    _, events = run("res_multistep_cfg_pp", GUIDER, karras(8))
    prev = None
    for ev in events:
        guided, uncond = both(ev.x, ev.sigma)
        expected = guided + (ev.sigma_next / ev.sigma) * (ev.x - uncond)
        if prev is not None and ev.sigma_next > 0:
            h, h_prev = math.log(ev.sigma / ev.sigma_next), math.log(prev[0] / ev.sigma)
            expected = expected + (h - 1 + math.exp(-h)) / h_prev * (guided - prev[1])
        assert close(ev.x_next, expected)
        prev = (ev.sigma, uncond)


def test_cfgpp_at_zero_guidance_follows_the_unconditional_ode():
    """Scale 0: guided = uncond, so every CFG++ sampler is its base sampler on the unconditional model."""
    zero = TinyGuider(MIXTURE, UNCOND, scale=0.0)
    sigmas = karras(10)
    for cfgpp, base in (("Euler CFG++", "Euler"), ("DPM++ 2M CFG++", "DPM++ 2M"), ("DDIM CFG++", "DDIM")):
        assert close(run(cfgpp, zero, sigmas)[0], run(base, UNCOND, sigmas)[0], 1e-11)


# ---------------------------------------------------------------- SEEDS / exponential Heun


def test_seeds_2_without_noise_is_dpmpp_2s():
    sigmas = karras(10)
    assert close(
        run("seeds_2", MIXTURE, sigmas, eta=0.0)[0], run("DPM++ 2S a", MIXTURE, sigmas, eta=0.0)[0], 1e-11
    )


@pytest.mark.parametrize("name", ["seeds_2", "seeds_3", "exp_heun_2_x0_sde"])
def test_sde_noise_of_the_stages_has_the_sde_variance(name):
    """D ≡ μ: x′ = μ + e^{−(1+η)h}·(x − μ) + σ′·sqrt(1 − e^{−2ηh})·z with z the step's unit noise."""

    def point(x, sigma):  # the exact denoiser of a point mass at 0.5
        return torch.full_like(x, 0.5)

    sigmas = torch.tensor([SIGMA_MAX, 4.0, 1.1, 0.3], dtype=torch.float64)
    x = 0.5 + SIGMA_MAX * torch.randn(
        40000, 1, generator=torch.Generator().manual_seed(8), dtype=torch.float64
    )
    out, events = run(name, point, sigmas, x=x, seed=9)
    for ev in events:
        h = math.log(ev.sigma / ev.sigma_next)
        expected = (
            0.5 + math.exp(-2 * h) * (ev.x - 0.5) + ev.sigma_next * math.sqrt(-math.expm1(-2 * h)) * ev.noise
        )
        assert close(ev.x_next, expected, 1e-11)
        assert ev.noise.var().item() == pytest.approx(1.0, abs=0.04)  # 20000 draws: sd of the estimate 0.01
    # the SDE keeps the marginal N(μ, σ²) of the point mass at every σ
    assert ((out - 0.5) ** 2).mean().item() == pytest.approx(0.3**2, rel=0.04)


@pytest.mark.parametrize("name", ["seeds_2", "seeds_3"])
def test_seeds_sde_preserves_the_mixture_marginal(name):
    """From exact samples of p_σmax, 30 steps to σ_min keep the mean and variance of p_σmin (exact moments)."""
    x = MIXTURE.sample_noisy(8000, SIGMA_MAX, torch.Generator().manual_seed(1))
    out, _ = run(name, MIXTURE, karras(30)[:-1], x=x, seed=2)
    variance = torch.diagonal(MIXTURE.covariance()) + SIGMA_MIN**2
    assert torch.allclose(out.mean(0), MIXTURE.mean(), atol=0.04)  # sd of the sample mean ≈ 0.013
    assert torch.allclose(out.var(0), variance, rtol=0.05)
