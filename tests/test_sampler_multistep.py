"""Multistep and timestep samplers against exact ODE solutions, plus their bookkeeping.

Oracles: the closed-form probability-flow ODE solution for one Gaussian N(μ, s²I),
x(σ) = μ + (x_a − μ)·sqrt((s² + σ²)/(s² + σ_a²)); for a 2-D Gaussian mixture a scipy DOP853 solution of
dx/d(ln σ) = x − D*(x; σ) with the exact mixture denoiser; scipy quadrature for the LMS and DEIS
coefficients. Schedules are Karras ρ = 7 from σ_max = 14.614642 to σ_min = 0.0291675 with no final step
to 0, so the exact state at σ_min is the reference. Orders are the negated log-log slope of the max error
against the step count over 20…160 steps.

Measured orders (single Gaussian, fitted over 20, 40, 80, 160 steps): LMS 3.63, IPNDM 2.05, IPNDM_V 3.63,
DEIS 2.88, PLMS 2.05, UniPC 2.00 (bh2 2.23, vary_coeff 2.17; the lower-order final step is first order),
UniPC without lower_order_final 4.00, res_multistep 2.07, gradient_estimation 0.88 (→ 1); with η = 0:
seeds_2 1.97 (phi_2 form 2.00), seeds_3 2.89, exp_heun_2_x0 1.97.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from glassforge.sampling.events import SamplerStep
from glassforge.sampling.samplers import SAMPLERS
from glassforge.sampling.samplers.multistep import (
    DEIS_BETA_D,
    DEIS_BETA_MIN,
    DEIS_EPS_S,
    adams_coefficients,
    deis_coefficients,
    deis_time,
    phi,
)
from glassforge.toy import GaussianMixture

SIGMA_MAX, SIGMA_MIN = 14.614642, 0.0291675
GAUSS = GaussianMixture.create([[0.3, -0.2]], 0.5)
MIXTURE = GaussianMixture.create([[-1.0, 0.5], [1.5, -0.5], [0.2, 1.8]], [0.3, 0.5, 0.4], [0.3, 0.5, 0.2])
GRID = torch.stack(
    torch.meshgrid(torch.linspace(-2.5, 2.5, 7), torch.linspace(-2.5, 2.5, 7), indexing="ij"), -1
)
X_T = GRID.reshape(-1, 2).double() * SIGMA_MAX

MY_SAMPLERS = [
    "LMS",
    "IPNDM",
    "IPNDM_V",
    "DEIS",
    "res_multistep",
    "res_multistep_ancestral",
    "gradient_estimation",
    "DDIM",
    "PLMS",
    "UniPC",
    "UniPC BH2",
    "LCM",
    "DDPM",
    "Euler CFG++",
    "Euler a CFG++",
    "DPM++ 2M CFG++",
    "DPM++ 2S a CFG++",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral_cfg_pp",
    "DDIM CFG++",
    "seeds_2",
    "seeds_3",
    "exp_heun_2_x0",
    "exp_heun_2_x0_sde",
]


def karras(n: int, rho: float = 7.0) -> torch.Tensor:
    """n steps: n + 1 Karras σ from σ_max to σ_min (no final 0)."""
    ramp = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    return (SIGMA_MAX ** (1 / rho) + ramp * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho


def with_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def fitted_order(name: str, options: dict, steps=(20, 40, 80, 160)) -> tuple[float, list[float]]:
    errors = []
    for n in steps:
        sigmas = karras(n)
        out = SAMPLERS[name](GAUSS, X_T.clone(), sigmas, **options)
        errors.append((out - GAUSS.ode_solution(X_T, SIGMA_MAX, SIGMA_MIN)).abs().max().item())
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0]), errors


# (name, options, lowest accepted order): theory order 4 for LMS/IPNDM_V (variable-step AB4), 3 for DEIS-3,
# 2 for fixed-weight AB on non-uniform steps (IPNDM, PLMS), RES and UniPC ending in a first-order step,
# 4 for UniPC-3 with its corrector throughout, 1 for gradient estimation.
ORDER_CASES = [
    ("LMS", {}, 3.3),
    ("IPNDM", {}, 1.8),
    ("IPNDM_V", {}, 3.3),
    ("DEIS", {}, 2.6),
    ("PLMS", {}, 1.8),
    ("UniPC", {}, 1.8),
    ("UniPC", {"variant": "bh2"}, 1.8),
    ("UniPC", {"variant": "vary_coeff"}, 1.8),
    ("UniPC", {"lower_order_final": False}, 3.6),
    ("UniPC", {"lower_order_final": False, "variant": "vary_coeff"}, 3.6),
    ("res_multistep", {}, 1.8),
    ("seeds_2", {"eta": 0.0}, 1.8),
    ("seeds_2", {"eta": 0.0, "solver_type": "phi_2"}, 1.8),
    ("seeds_3", {"eta": 0.0}, 2.7),
    ("exp_heun_2_x0", {}, 1.8),
]


@pytest.mark.parametrize(("name", "options", "lowest"), ORDER_CASES, ids=lambda v: str(v))
def test_convergence_order_single_gaussian(name, options, lowest):
    order, errors = fitted_order(name, options)
    assert errors[-1] < errors[0]
    assert order >= lowest, f"{name} {options}: fitted order {order:.2f}, errors {errors}"


def test_gradient_estimation_is_first_order():
    # d̄ = 2·d_i − d_{i−1} matches the Taylor term d′·dt/2 only when dt_{i−1} = dt_i/2: first order
    order, errors = fitted_order("gradient_estimation", {}, steps=(40, 80, 160, 320))
    assert 0.8 <= order <= 1.2, (order, errors)


def test_ddim_is_first_order():
    order, _ = fitted_order("DDIM", {})
    assert 0.9 <= order <= 1.1


@pytest.fixture(scope="module")
def mixture_reference():
    x0 = MIXTURE.sample_noisy(12, SIGMA_MAX, torch.Generator().manual_seed(0))

    def rhs(log_sigma, y):
        x = torch.from_numpy(y.reshape(-1, 2))
        return (
            (x - MIXTURE(x, torch.full((x.shape[0],), math.exp(log_sigma), dtype=torch.float64)))
            .numpy()
            .ravel()
        )

    sol = integrate.solve_ivp(
        rhs,
        (math.log(SIGMA_MAX), math.log(SIGMA_MIN)),
        x0.numpy().ravel(),
        method="DOP853",
        rtol=1e-10,
        atol=1e-10,
    )
    assert sol.success
    return x0, torch.from_numpy(sol.y[:, -1].reshape(-1, 2))


# Measured max errors at 80 steps: LMS/IPNDM_V 2.8e-4, IPNDM/PLMS 4.6e-4, DEIS 5.5e-4, UniPC 6.9e-5,
# res_multistep 1.7e-3, gradient_estimation 3.4e-2 (Euler: 4.7e-2).
@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("LMS", 1e-3),
        ("IPNDM", 2e-3),
        ("IPNDM_V", 1e-3),
        ("DEIS", 2e-3),
        ("PLMS", 2e-3),
        ("UniPC", 3e-4),
        ("UniPC BH2", 3e-4),
        ("res_multistep", 5e-3),
        ("gradient_estimation", 5e-2),
    ],
)
def test_mixture_against_dop853(mixture_reference, name, bound):
    x0, reference = mixture_reference
    errors = [
        (SAMPLERS[name](MIXTURE, x0.clone(), karras(n)) - reference).abs().max().item() for n in (40, 80)
    ]
    assert errors[1] < errors[0]
    assert errors[1] < bound, errors


# ---------------------------------------------------------------- coefficient oracles


def test_lms_coefficients_match_quadrature():
    nodes, start, end = [3.0, 5.1, 7.3, 10.0], 3.0, 2.2
    ours = adams_coefficients(nodes, start, end)
    for j, c in enumerate(ours):

        def basis(tau, j=j):
            return math.prod((tau - nodes[k]) / (nodes[j] - nodes[k]) for k in range(len(nodes)) if k != j)

        assert c == pytest.approx(integrate.quad(basis, start, end, epsabs=1e-14, epsrel=1e-13)[0], rel=1e-11)
    assert sum(ours) == pytest.approx(end - start, rel=1e-13)


def test_deis_coefficients_match_quadrature_in_vp_time():
    def vp_sigma(t):
        return math.sqrt(math.expm1(0.5 * DEIS_BETA_D * t * t + DEIS_BETA_MIN * t))

    # the VP-SDE is pinned to σ(ε_s) = 0.002 and σ(1) = 80
    assert vp_sigma(DEIS_EPS_S) == pytest.approx(0.002, rel=1e-12)
    assert vp_sigma(1.0) == pytest.approx(80.0, rel=1e-12)
    assert float(deis_time(5.0)) == pytest.approx(
        optimize.brentq(lambda t: vp_sigma(t) - 5.0, DEIS_EPS_S, 1.0, xtol=1e-15), rel=1e-10
    )

    sigmas = karras(12).tolist()
    for i, order in ((5, 3), (11, 3), (1, 2)):
        times = [float(deis_time(sigmas[i - k])) for k in range(order)]
        t_a, t_b = float(deis_time(sigmas[i])), float(deis_time(sigmas[i + 1]))
        for j, c in enumerate(deis_coefficients(sigmas, i, order)):

            def integrand(tau, j=j, times=times, order=order):
                dsigma = (DEIS_BETA_D * tau + DEIS_BETA_MIN) * (1 + vp_sigma(tau) ** 2) / (2 * vp_sigma(tau))
                basis = math.prod((tau - times[k]) / (times[j] - times[k]) for k in range(order) if k != j)
                return dsigma * basis

            expected = integrate.quad(integrand, t_a, t_b, epsabs=1e-14, epsrel=1e-12)[0]
            assert c == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_phi_functions_closed_forms():
    for z in (-7.0, -2.0, -1.0, -0.999, -0.3, -1e-4, 0.5):
        assert phi(1, z) == pytest.approx(math.expm1(z) / z, rel=1e-12)
        if abs(z) > 1e-2:
            assert phi(2, z) == pytest.approx((math.expm1(z) - z) / z**2, rel=1e-10)
            assert phi(3, z) == pytest.approx((math.expm1(z) - z - z * z / 2) / z**3, rel=1e-8)
    assert phi(2, 0.0) == 0.5 and phi(3, 0.0) == pytest.approx(1 / 6)


def test_ipndm_v_equals_ipndm_on_uniform_steps():
    sigmas = torch.linspace(SIGMA_MAX, 0.5, 30, dtype=torch.float64)
    fixed = SAMPLERS["IPNDM"](MIXTURE, X_T.clone(), sigmas)
    variable = SAMPLERS["IPNDM_V"](MIXTURE, X_T.clone(), sigmas)
    assert torch.allclose(fixed, variable, rtol=0, atol=1e-11)
    karras_fixed = SAMPLERS["IPNDM"](MIXTURE, X_T.clone(), karras(30))
    assert (karras_fixed - SAMPLERS["IPNDM_V"](MIXTURE, X_T.clone(), karras(30))).abs().max() > 1e-4


def test_plms_first_step_is_heun():
    sigmas = torch.tensor([SIGMA_MAX, 6.0], dtype=torch.float64)
    d0 = (X_T - MIXTURE(X_T, sigmas[:1].expand(len(X_T)))) / SIGMA_MAX
    x1 = X_T + (6.0 - SIGMA_MAX) * d0
    d1 = (x1 - MIXTURE(x1, torch.full((len(X_T),), 6.0, dtype=torch.float64))) / 6.0
    heun = X_T + (6.0 - SIGMA_MAX) * (d0 + d1) / 2
    assert torch.allclose(SAMPLERS["PLMS"](MIXTURE, X_T.clone(), sigmas), heun, rtol=0, atol=1e-12)


def test_res_multistep_step_is_exponential_integrator_of_linear_interpolant():
    events = []
    sigmas = with_zero(karras(8))
    SAMPLERS["res_multistep"](MIXTURE, X_T.clone(), sigmas, on_event=events.append)
    for prev, ev in itertools.pairwise(events[:-1]):
        h, h_prev = math.log(ev.sigma / ev.sigma_next), math.log(prev.sigma / ev.sigma)
        # ∫_0^h e^{−(h−u)}·(D_i + u·(D_i − D_{i−1})/h_prev) du, worked out by hand
        expected = (
            math.exp(-h) * ev.x
            + (1 - math.exp(-h)) * ev.denoised
            + (h - 1 + math.exp(-h)) / h_prev * (ev.denoised - prev.denoised)
        )
        assert torch.allclose(ev.x_next, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name",
    [
        "LMS",
        "IPNDM",
        "IPNDM_V",
        "DEIS",
        "PLMS",
        "UniPC",
        "UniPC BH2",
        "res_multistep",
        "gradient_estimation",
        "DDIM",
        "exp_heun_2_x0",
        "seeds_3",
    ],
)
def test_exact_for_a_point_mass(name):
    """Data = a point μ: D ≡ μ and x(σ) = μ + (x_a − μ)·σ/σ_a; every consistent solver is exact."""
    point = GaussianMixture.create([[0.7, -1.2]], 0.0)
    sigmas, options = karras(9), {"eta": 0.0} if SAMPLERS[name].stochastic else {}
    out = SAMPLERS[name](point, X_T.clone(), sigmas, **options)
    expected = point.means[0] + (X_T - point.means[0]) * float(sigmas[-1]) / SIGMA_MAX
    assert torch.allclose(out, expected, rtol=0, atol=1e-11)
    assert torch.allclose(
        SAMPLERS[name](point, X_T.clone(), with_zero(sigmas), **options),
        point.means[0].expand_as(X_T),
        rtol=0,
        atol=1e-11,
    )


# ---------------------------------------------------------------- bookkeeping


class Counting:
    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.denoiser(x, sigma)


@pytest.mark.parametrize(
    ("name", "calls"),
    [
        ("LMS", 10),
        ("IPNDM", 10),
        ("DEIS", 10),
        ("PLMS", 11),
        ("UniPC", 10),
        ("UniPC BH2", 10),
        ("DDPM", 10),
        ("DPM++ 2S a CFG++", 19),
    ],
)
def test_model_calls_per_run(name, calls):
    counting = Counting(MIXTURE)
    SAMPLERS[name](counting, X_T.clone(), with_zero(karras(9)), generator=torch.Generator().manual_seed(1))
    assert counting.calls == calls


@pytest.mark.parametrize("name", MY_SAMPLERS)
def test_events_chain(name):
    info = SAMPLERS[name]
    sigmas = with_zero(karras(6))
    x_in = X_T[:5].clone()
    events: list[SamplerStep] = []
    out = info(MIXTURE, x_in, sigmas, generator=torch.Generator().manual_seed(3), on_event=events.append)
    assert len(events) == len(sigmas) - 1
    assert torch.equal(events[0].x, x_in) and torch.equal(events[-1].x_next, out)
    for i, ev in enumerate(events):
        assert (ev.i, ev.total) == (i, len(sigmas) - 1)
        assert ev.sigma == float(sigmas[i]) and ev.sigma_next == float(sigmas[i + 1])
        assert ev.formula and ev.sampler and ev.denoised.shape == x_in.shape
        assert all(math.isfinite(v) for v in ev.terms.values())
        if i + 1 < len(events):
            assert torch.equal(ev.x_next, events[i + 1].x)
        if info.stochastic and ev.sigma_next > 0:
            assert ev.noise is not None and ev.noise.shape == x_in.shape
        if not info.stochastic:
            assert ev.noise is None


def test_lcm_event_noise_is_the_injected_noise():
    events = []
    SAMPLERS["LCM"](
        MIXTURE,
        X_T.clone(),
        with_zero(karras(4)),
        generator=torch.Generator().manual_seed(5),
        on_event=events.append,
    )
    for ev in events[:-1]:
        assert torch.allclose(ev.x_next, ev.denoised + ev.sigma_next * ev.noise, rtol=0, atol=1e-13)
    assert torch.equal(events[-1].x_next, events[-1].denoised)


STOCHASTIC = [
    "DDPM",
    "LCM",
    "res_multistep_ancestral",
    "Euler a CFG++",
    "DPM++ 2S a CFG++",
    "res_multistep_ancestral_cfg_pp",
    "seeds_2",
    "seeds_3",
    "exp_heun_2_x0_sde",
]


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_reproducible_and_batch_equals_singles(name):
    sampler, sigmas = SAMPLERS[name], with_zero(karras(5))
    x = X_T[:3].clone()
    first = sampler(MIXTURE, x.clone(), sigmas, generator=torch.Generator().manual_seed(11))
    again = sampler(MIXTURE, x.clone(), sigmas, generator=torch.Generator().manual_seed(11))
    other = sampler(MIXTURE, x.clone(), sigmas, generator=torch.Generator().manual_seed(12))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    seeds = [21, 22, 23]
    batch = sampler(MIXTURE, x.clone(), sigmas, generator=[torch.Generator().manual_seed(s) for s in seeds])
    for row, seed in enumerate(seeds):
        single = sampler(
            MIXTURE, x[row : row + 1].clone(), sigmas, generator=[torch.Generator().manual_seed(seed)]
        )
        assert torch.equal(batch[row : row + 1], single)


def test_ddim_eta_is_reproducible_and_stochastic():
    sigmas = with_zero(karras(5))
    a = SAMPLERS["DDIM"](MIXTURE, X_T.clone(), sigmas, eta=0.5, generator=torch.Generator().manual_seed(2))
    b = SAMPLERS["DDIM"](MIXTURE, X_T.clone(), sigmas, eta=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, SAMPLERS["DDIM"](MIXTURE, X_T.clone(), sigmas))


def test_registry_entries():
    assert SAMPLERS["uni_pc_bh2"].name == "UniPC BH2"
    assert dict(SAMPLERS["uni_pc_bh2"].defaults) == {"variant": "bh2"}
    assert (
        SAMPLERS["uni_pc_bh2"].discard_penultimate_sigma and not SAMPLERS["UniPC"].discard_penultimate_sigma
    )
    assert SAMPLERS["uni_pc"] is SAMPLERS["unipc"] is SAMPLERS["UniPC"]
    assert SAMPLERS["k_lms"].name == "LMS" and SAMPLERS["k_lcm"].name == "LCM"
    assert SAMPLERS["ddim"].default_schedule == "DDIM" and SAMPLERS["plms"].default_schedule == "DDIM"
    for name in (
        "Euler CFG++",
        "Euler a CFG++",
        "DPM++ 2M CFG++",
        "DPM++ 2S a CFG++",
        "res_multistep_cfg_pp",
        "res_multistep_ancestral_cfg_pp",
        "DDIM CFG++",
    ):
        assert SAMPLERS[name].needs_uncond
    with pytest.raises(ValueError, match="variant"):
        SAMPLERS["UniPC"](MIXTURE, X_T.clone(), karras(3), variant="bh3")
