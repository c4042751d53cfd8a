"""Deterministic samplers against exact probability-flow ODE solutions.

Oracles: the closed-form PF-ODE solution for one Gaussian, x(σ) = μ + (x_a − μ)·sqrt((s² + σ²)/(s² + σ_a²)),
and for a 1-D Gaussian mixture a scipy DOP853 solution (rtol = atol = 1e-11) of dx/dσ = (x − D*(x; σ))/σ
with the exact mixture denoiser. Schedules are Karras ρ = 7 from σ_max = 14.6146 down to σ_min = 0.0292
without the final step to 0, so the exact state at σ_min is the reference. Orders are the negated
log-log slope of the error against the step count.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from glassforge.sampling.samplers import SAMPLERS
from glassforge.sampling.samplers.heun import restart_segments
from glassforge.toy import GaussianMixture

SIGMA_MAX, SIGMA_MIN = 14.6146, 0.0292

# Every sampler of the k-diffusion family with its step-event name; the DPM-Solver pair is tested apart.
SCHEDULED = {
    "Euler": "euler",
    "Euler a": "euler_ancestral",
    "Heun": "heun",
    "DPM2": "dpm_2",
    "DPM2 a": "dpm_2_ancestral",
    "HeunPP2": "heunpp2",
    "Restart": "restart",
    "DPM++ 2S a": "dpmpp_2s_ancestral",
    "DPM++ SDE": "dpmpp_sde",
    "DPM++ 2M": "dpmpp_2m",
    "DPM++ 2M SDE": "dpmpp_2m_sde",
    "DPM++ 2M SDE Heun": "dpmpp_2m_sde_heun",
    "DPM++ 3M SDE": "dpmpp_3m_sde",
}


def karras(
    n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0
) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def with_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def order_of(steps, errors) -> float:
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


class Counting:
    """The exact denoiser, counting model calls (one per call, whatever the batch)."""

    def __init__(self, gm: GaussianMixture):
        self.gm, self.calls = gm, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.gm(x, sigma)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one intra-op thread is ~10× faster than contending for two cores with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- single Gaussian, closed form

GAUSSIANS = {
    "1d": GaussianMixture.create([[0.3]], 0.5),
    "2d": GaussianMixture.create([[0.3, -0.7]], 0.4),
}
ORDERS = {"Euler": (0.85, 1.2), "Heun": (1.8, 2.3), "DPM2": (1.8, 2.3), "DPM++ 2M": (1.8, 2.3)}


@pytest.mark.parametrize("dim", ["1d", "2d"])
@pytest.mark.parametrize("name", list(ORDERS))
def test_order_on_a_gaussian_against_the_closed_form(name, dim):
    gm = GAUSSIANS[dim]
    x_t = gm.sample_noisy(2000, SIGMA_MAX, gen(0))
    steps = [10, 20, 40, 80]
    errors = []
    for n in steps:
        sigmas = karras(n + 1)
        exact = gm.ode_solution(x_t, SIGMA_MAX, SIGMA_MIN)
        errors.append(float((SAMPLERS[name](gm, x_t, sigmas) - exact).abs().max()))
    lo, hi = ORDERS[name]
    assert lo <= order_of(steps, errors) <= hi, (name, errors)
    assert errors[-1] < (0.05 if name == "Euler" else 2e-3)


# With η = 0 the ancestral and SDE samplers keep only their drift: a convergent ODE solver. The
# multistep ones start with a first-order step, whose O(h²) local error bounds the order at 2.
DRIFT_ORDERS = {"Euler a": (0.85, 1.2), "HeunPP2": (0.85, 1.2), "DPM2 a": (1.8, 2.3), "DPM++ 2S a": (1.8, 2.3),
                "DPM++ SDE": (1.8, 2.3), "DPM++ 2M SDE Heun": (1.8, 2.3), "DPM++ 3M SDE": (1.8, 2.8)}  # fmt: skip


@pytest.mark.parametrize("name", list(DRIFT_ORDERS))
def test_noise_free_drift_converges(name):
    gm = GAUSSIANS["2d"]
    x_t = gm.sample_noisy(1000, SIGMA_MAX, gen(0))
    exact = gm.ode_solution(x_t, SIGMA_MAX, SIGMA_MIN)
    options = {} if name == "HeunPP2" else {"eta": 0.0}
    steps = [10, 20, 40, 80]
    errors = [float((SAMPLERS[name](gm, x_t, karras(n + 1), generator=gen(1), **options) - exact).abs().max())
              for n in steps]  # fmt: skip
    lo, hi = DRIFT_ORDERS[name]
    assert lo <= order_of(steps, errors) <= hi, errors


def test_noise_free_identities():
    """DPM2 a (η = 0) is DPM2; DPM++ SDE (η = 0, r = 1/2) and DPM++ 2S a (η = 0) are both DPM-Solver++(2S)."""
    x_t = MIXTURE.sample_noisy(100, SIGMA_MAX, gen(9))
    sigmas = with_zero(karras(12))

    def run(name, **options):
        return SAMPLERS[name](MIXTURE, x_t, sigmas, generator=gen(1), **options)

    assert float((run("DPM2 a", eta=0.0) - run("DPM2")).abs().max()) < 1e-12
    assert float((run("DPM++ SDE", eta=0.0) - run("DPM++ 2S a", eta=0.0)).abs().max()) < 1e-12


# ---------------------------------------------------------------- 1-D mixture, DOP853 reference

MIXTURE = GaussianMixture.create([[-1.0], [1.5]], [math.sqrt(0.05), math.sqrt(0.2)], [0.3, 0.7])


def density(gm: GaussianMixture, x: torch.Tensor, sigma: float) -> torch.Tensor:
    var = gm.stds**2 + sigma**2  # 1-D
    return (
        gm.weights * torch.exp(-0.5 * (x - gm.means[:, 0]) ** 2 / var) / torch.sqrt(2 * math.pi * var)
    ).sum(-1)


def ode_reference(gm, x_t, sigma_from, sigma_to):
    def rhs(sigma, y):
        x = torch.from_numpy(y).reshape(x_t.shape)
        return ((x - gm.denoise(x, sigma)) / sigma).reshape(-1).numpy()

    sol = solve_ivp(
        rhs, (sigma_from, sigma_to), x_t.reshape(-1).numpy(), method="DOP853", rtol=1e-11, atol=1e-11
    )
    assert sol.success
    return torch.from_numpy(sol.y[:, -1]).reshape(x_t.shape)


@pytest.fixture(scope="module")
def mixture_run():
    x_t = MIXTURE.sample_noisy(200, SIGMA_MAX, gen(0))
    return x_t, ode_reference(MIXTURE, x_t, SIGMA_MAX, SIGMA_MIN)


# Euler reaches its asymptotic regime later on this mixture, so it gets longer schedules.
MIXTURE_STEPS = {"Euler": [40, 80, 160, 320], "Heun": [20, 40, 80, 160], "DPM2": [20, 40, 80, 160],
                 "DPM++ 2M": [20, 40, 80, 160]}  # fmt: skip


@pytest.mark.parametrize("name", list(MIXTURE_STEPS))
def test_order_on_a_mixture_against_dop853(name, mixture_run):
    """RMS error over the trajectories that end inside a mode (p_σmin(x) ≥ 0.1).

    Trajectories ending in the gap between the modes are left out: there the flow's sensitivity
    dx(σ_min)/dx(σ_max) = p_σmax/p_σmin is ~100× larger and these step counts are still pre-asymptotic.
    """
    x_t, reference = mixture_run
    inside = density(MIXTURE, reference, SIGMA_MIN) >= 0.1
    assert inside.sum() >= 150
    steps = MIXTURE_STEPS[name]
    errors = []
    for n in steps:
        error = SAMPLERS[name](MIXTURE, x_t, karras(n + 1)) - reference
        errors.append(float(error[inside].pow(2).mean().sqrt()))
    order = order_of(steps, errors)
    if name == "Euler":
        assert 0.85 <= order <= 1.2, errors
    else:
        assert order >= 1.8, errors


def test_dpm_fast_reaches_the_reference_and_ends_at_sigma_min(mixture_run):
    x_t, reference = mixture_run
    errors = {}
    for nfe in (30, 120):
        counting = Counting(MIXTURE)
        out = SAMPLERS["DPM fast"](counting, x_t, with_zero(karras(nfe)), eta=0.0)
        assert counting.calls == nfe  # the step count is the model-call budget
        errors[nfe] = float((out - reference).abs().max())
    assert errors[120] < 1e-3
    assert errors[30] / errors[120] > 4**2  # better than second order in the budget

    # One Gaussian, against the closed form at σ_min (where DPM fast stops). With a budget of 3k + 2
    # the steps are of order 3, …, 3, 2 and the error falls as budget⁻³; a trailing order-1 step
    # (budget 3k or 3k + 1) leaves second order overall.
    gm = GAUSSIANS["2d"]
    x_g = gm.sample_noisy(500, SIGMA_MAX, gen(1))
    exact = gm.ode_solution(x_g, SIGMA_MAX, SIGMA_MIN)
    budgets = [32, 62, 122]
    errors = [float((SAMPLERS["DPM fast"](gm, x_g, with_zero(karras(n)), eta=0.0) - exact).abs().max())
              for n in budgets]  # fmt: skip
    assert order_of(budgets, errors) >= 2.7, errors
    assert errors[-1] < 3e-5


def test_dpm_adaptive_error_follows_the_tolerance(mixture_run):
    x_t, reference = mixture_run
    sigmas = with_zero(karras(10))  # only σ_max and σ_min matter
    loose, tight = Counting(MIXTURE), Counting(MIXTURE)
    out_loose = SAMPLERS["DPM adaptive"](loose, x_t, sigmas, eta=0.0)  # A1111's rtol/atol
    out_tight = SAMPLERS["DPM adaptive"](tight, x_t, sigmas, eta=0.0, rtol=1e-7, atol=1e-9)
    assert float((out_loose - reference).pow(2).mean().sqrt()) < 0.03 and loose.calls < 60
    assert float((out_tight - reference).abs().max()) < 1e-6
    assert loose.calls < tight.calls
    out_2 = SAMPLERS["DPM adaptive"](MIXTURE, x_t, sigmas, eta=0.0, order=2, rtol=1e-5, atol=1e-7)
    assert float((out_2 - reference).abs().max()) < 1e-3  # the DPM-Solver-1/2 pair


def test_dpm_solver_order_one_budget_is_euler():
    """DPM-Solver-1 ≡ DDIM ≡ Euler: with a budget of 1 model call DPM fast is one Euler step to σ_min."""
    x_t = MIXTURE.sample_noisy(50, SIGMA_MAX, gen(2))
    out = SAMPLERS["DPM fast"](MIXTURE, x_t, torch.tensor([SIGMA_MAX, SIGMA_MIN]), eta=0.0)
    euler = SAMPLERS["Euler"](MIXTURE, x_t, torch.tensor([SIGMA_MAX, SIGMA_MIN]))
    assert torch.allclose(out, euler, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- exact identities and call counts


@pytest.mark.parametrize("name", ["Heun", "DPM2", "Restart"])
@pytest.mark.parametrize("steps", [1, 5, 12, 25])
def test_second_order_samplers_make_2n_minus_1_model_calls(name, steps):
    """The last step (to σ = 0) is an Euler step: N steps cost 2N − 1 model calls."""
    counting = Counting(MIXTURE)
    x_t = MIXTURE.sample_noisy(8, SIGMA_MAX, gen(3))
    SAMPLERS[name](counting, x_t, with_zero(karras(steps)))
    assert counting.calls == 2 * steps - 1


def test_heunpp2_model_calls():
    """Heun++: three calls per step, a Heun step (two) before the last step, Euler (one) on the last."""
    counting = Counting(MIXTURE)
    SAMPLERS["HeunPP2"](counting, MIXTURE.sample_noisy(8, SIGMA_MAX, gen(3)), with_zero(karras(10)))
    assert counting.calls == 3 * 8 + 2 + 1


def test_heunpp2_uses_its_stated_weights():
    """Each step is x + dt·(w₁d̂ + w₂d′ + w₃d″) with w₂ = σ_{i+1}/(3σ_0), w₃ = σ_{i+2}/(3σ_0), w₁ = 1 − w₂ − w₃
    (σ_{i+1}/(2σ_0) on the Heun step before the last, Euler on the last), slopes along Euler look-aheads."""
    x_t = MIXTURE.sample_noisy(50, SIGMA_MAX, gen(3))
    sigmas = with_zero(karras(8))
    s = sigmas.tolist()
    events = []
    SAMPLERS["HeunPP2"](MIXTURE, x_t, sigmas, on_event=events.append)

    def slope(x, sigma):
        return (x - MIXTURE(x, torch.full((len(x),), sigma, dtype=x.dtype))) / sigma

    for i, e in enumerate(events):
        w2 = (
            s[i + 1] / (3 * s[0])
            if i < len(events) - 2
            else s[i + 1] / (2 * s[0])
            if i == len(events) - 2
            else 0
        )
        w3 = s[i + 2] / (3 * s[0]) if i < len(events) - 2 else 0
        assert (e.terms["w2"], e.terms["w3"], e.terms["w1"]) == pytest.approx(
            (w2, w3, 1 - w2 - w3), rel=1e-12
        )
        d1 = slope(e.x, s[i])
        x2 = e.x + d1 * (s[i + 1] - s[i])
        d2 = slope(x2, s[i + 1]) if w2 else 0
        d3 = slope(x2 + d2 * (s[i + 2] - s[i + 1]), s[i + 2]) if w3 else 0
        expected = e.x + (s[i + 1] - s[i]) * ((1 - w2 - w3) * d1 + w2 * d2 + w3 * d3)
        assert float((e.x_next - expected).abs().max()) < 1e-12


def test_first_dpmpp_2m_step_is_the_ddim_step():
    """DPM++ 2M's first step equals DDIM(η = 0) computed in VP coordinates on ᾱ = 1/(1 + σ²)."""
    x_t = MIXTURE.sample_noisy(100, SIGMA_MAX, gen(4))
    sigmas = with_zero(karras(10))
    events = []
    SAMPLERS["DPM++ 2M"](MIXTURE, x_t, sigmas, on_event=events.append)
    s, s_next = float(sigmas[0]), float(sigmas[1])
    a, a_next = 1 / (1 + s**2), 1 / (1 + s_next**2)
    x_vp = x_t * math.sqrt(a)
    x0 = MIXTURE(x_t, torch.full((100,), s, dtype=torch.float64))
    eps = (x_vp - math.sqrt(a) * x0) / math.sqrt(1 - a)
    ddim = (math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps) / math.sqrt(a_next)
    assert float((events[0].x_next - ddim).abs().max()) <= 1e-12
    euler = []
    SAMPLERS["Euler"](MIXTURE, x_t, sigmas, on_event=euler.append)
    assert float((events[0].x_next - euler[0].x_next).abs().max()) <= 1e-12
    # and later steps do use the history: the second step differs from a fresh Euler step
    assert not torch.allclose(events[1].x_next, euler[1].x_next)


def test_dpmpp_2m_sde_without_noise_is_dpmpp_2m():
    """With η = 0 the midpoint 2M SDE update reduces algebraically to DPM++ 2M."""
    x_t = MIXTURE.sample_noisy(100, SIGMA_MAX, gen(5))
    sigmas = with_zero(karras(15))
    a = SAMPLERS["DPM++ 2M"](MIXTURE, x_t, sigmas)
    b = SAMPLERS["DPM++ 2M SDE"](MIXTURE, x_t, sigmas, eta=0.0, generator=gen(0))
    assert float((a - b).abs().max()) < 1e-12


# ---------------------------------------------------------------- step events


def run_with_events(name, x, sigmas, **options):
    events = []
    x_before, sigmas_before = x.clone(), sigmas.clone()
    out = SAMPLERS[name](MIXTURE_2D, x, sigmas, generator=gen(7), on_event=events.append, **options)
    assert torch.equal(x, x_before) and torch.equal(sigmas, sigmas_before)  # inputs are not mutated
    return out, events


MIXTURE_2D = GaussianMixture.create([[-1.0, 0.5], [1.5, -0.5]], [0.3, 0.5], [0.4, 0.6])


def check_chain(x, out, events):
    assert torch.equal(events[0].x, x)
    for a, b in itertools.pairwise(events):
        assert torch.equal(a.x_next, b.x)  # the state after step i is the state before step i + 1
        assert a.sigma_next == b.sigma
    assert torch.equal(events[-1].x_next, out)
    for e in events:
        assert e.formula and all(math.isfinite(v) for v in e.terms.values()), e.terms
        assert e.x.shape == e.x_next.shape == e.denoised.shape == x.shape
        assert e.noise is None or e.noise.shape == x.shape


@pytest.mark.parametrize("name", list(SCHEDULED))
def test_step_events_follow_the_schedule(name):
    sigmas = with_zero(karras(12))
    x = MIXTURE_2D.sample_noisy(6, SIGMA_MAX, gen(6))
    out, events = run_with_events(name, x, sigmas)
    assert len(events) == 12
    assert [e.i for e in events] == list(range(12)) and {e.total for e in events} == {12}
    assert {e.sampler for e in events} == {SCHEDULED[name]}
    assert [e.sigma for e in events] == sigmas[:-1].tolist()
    assert [e.sigma_next for e in events] == sigmas[1:].tolist()
    check_chain(x, out, events)
    info = SAMPLERS[name]
    if info.stochastic and name != "DPM++ SDE":  # every step but the last injects fresh noise
        assert all(e.noise is not None for e in events[:-1]) and events[-1].noise is None
    elif not info.stochastic:
        assert all(e.noise is None for e in events)


def test_restart_events_with_restarts():
    """From 20 steps Restart rebuilds its schedule (11 Karras points + 0) and jumps from σ≈0.1 to σ≈2 once."""
    sigmas = with_zero(karras(20))
    x = MIXTURE_2D.sample_noisy(6, SIGMA_MAX, gen(8))
    counting = Counting(MIXTURE_2D)
    events = []
    out = SAMPLERS["Restart"](counting, x, sigmas, generator=gen(7), on_event=events.append)
    assert len(events) == 20 and counting.calls == 2 * 20 - 1
    check_chain(x, out, events)
    main = with_zero(karras(11, float(sigmas[-2]), float(sigmas[0])))
    lo = int((main - 0.1).abs().argmin())
    hi = int((main - 2.0).abs().argmin())
    sub = karras(10, float(main[lo]), float(main[hi]))
    expected = main[1 : lo + 1].tolist() + sub[1:].tolist() + main[lo + 1 :].tolist()
    assert np.allclose([e.sigma_next for e in events], expected, rtol=1e-12, atol=0)
    jumps = [e for e in events if e.noise is not None]
    assert len(jumps) == 1 and jumps[0].sigma == pytest.approx(float(main[lo]), rel=1e-12)
    assert jumps[0].terms["sigma_hat"] == pytest.approx(float(main[hi]), rel=1e-12)
    assert len(restart_segments(with_zero(karras(40)))) == 40  # 20 main steps + 2 restarts of 10


@pytest.mark.parametrize("name", ["DPM fast", "DPM adaptive"])
def test_dpm_solver_events_run_from_sigma_max_to_sigma_min(name):
    sigmas = with_zero(karras(12))
    x = MIXTURE_2D.sample_noisy(6, SIGMA_MAX, gen(6))
    out, events = run_with_events(name, x, sigmas)
    check_chain(x, out, events)
    assert events[0].sigma == pytest.approx(SIGMA_MAX) and events[-1].sigma_next == pytest.approx(SIGMA_MIN)
    assert [e.i for e in events] == list(range(len(events)))
    assert events[-1].total == len(events)
    if name == "DPM fast":  # 12 calls: orders 3, 3, 3, 2, 1 on a grid uniform in log σ
        assert [e.terms["order"] for e in events] == [3, 3, 3, 2, 1]
        log_steps = [math.log(e.sigma / e.sigma_next) for e in events]
        assert np.allclose(log_steps, math.log(SIGMA_MAX / SIGMA_MIN) / 5, rtol=1e-9)
