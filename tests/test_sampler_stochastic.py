"""Stochastic samplers: the distribution they sample, their noise scale, and their seeding.

* Distribution: 4000 particles started from exact samples of p_σmax (the data convolved with
  N(0, σ_max²I)) must reproduce the data's mean, covariance and mixture weights. The tolerance is
  derived from the sample size: 5 standard errors of each statistic (computed on a large exact data
  sample) plus a small allowance for the discretisation error of ~40 steps.
* Noise scale: the ancestral σ_up² equals DDIM(η = 1)'s variance mapped to σ-space.
* Seeds: the same generator seed gives bit-identical output, a batch with one generator per image
  equals the images run alone bit for bit, and different seeds differ.
"""

from __future__ import annotations

import math

import pytest
import torch

from glassforge.sampling.noise_schedule import DiscreteSchedule
from glassforge.sampling.samplers import SAMPLERS
from glassforge.toy import GaussianMixture

# torchsde rounds the Brownian tree's start to 6 digits, so a query at exactly σ_min warns (harmlessly).
pytestmark = pytest.mark.filterwarnings("ignore:Should have ta>=t0:UserWarning")

SIGMA_MAX, SIGMA_MIN = 14.6146, 0.0292
STEPS, PARTICLES = 40, 4000
DATA = GaussianMixture.create([[-1.5, 0.0], [1.5, 1.0], [0.0, -1.8]], [0.35, 0.45, 0.3], [0.2, 0.5, 0.3])

ANCESTRAL = ["Euler a", "DPM2 a", "DPM++ 2S a"]
BROWNIAN = ["DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"]
STOCHASTIC = [*ANCESTRAL, *BROWNIAN, "Restart", "DPM fast", "DPM adaptive"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one intra-op thread is ~10× faster than contending for two cores with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def default_sigmas(name: str, steps: int = STEPS) -> torch.Tensor:
    """The sampler's own default schedule (Karras or Exponential, SD's σ range), as A1111 builds it."""
    info = SAMPLERS[name]
    n = steps + 1 if info.discard_penultimate_sigma else steps
    if (info.default_schedule or "").casefold() == "exponential":
        sigmas = torch.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), n, dtype=torch.float64).exp()
    else:  # Karras ρ = 7 (also for the samplers without a default: the test only needs a good schedule)
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        sigmas = (SIGMA_MAX ** (1 / 7) + ramp * (SIGMA_MIN ** (1 / 7) - SIGMA_MAX ** (1 / 7))) ** 7
    sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    if info.discard_penultimate_sigma:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    assert len(sigmas) == steps + 1
    return sigmas


def nearest_component(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, None, :] - DATA.means[None]) ** 2).sum(-1).argmin(1)


def statistics(x: torch.Tensor) -> dict[str, torch.Tensor]:
    centred = x - x.mean(0)
    return {
        "mean": x.mean(0),
        "cov": (centred[:, :, None] * centred[:, None, :]).mean(0),
        "weights": torch.bincount(nearest_component(x), minlength=3).to(x.dtype) / len(x),
    }


@pytest.fixture(scope="module")
def truth():
    """Exact statistics of the data and the standard errors of their estimates from PARTICLES samples."""
    big = DATA.sample(400_000, gen(12345))
    mean, cov = DATA.mean(), DATA.covariance()
    centred = big - mean
    products = centred[:, :, None] * centred[:, None, :]
    q = statistics(big)["weights"]  # nearest-component fractions (the components overlap a little)
    return {
        "mean": (mean, (cov.diagonal() / PARTICLES).sqrt()),
        "cov": (cov, products.std(0) / math.sqrt(PARTICLES)),
        "weights": (q, (q * (1 - q) * (1 / PARTICLES + 1 / len(big))).sqrt()),
    }


ALLOWANCE = {"mean": 0.02, "cov": 0.05, "weights": 0.01}  # discretisation error at 40 steps


def check_distribution(samples, truth):
    got = statistics(samples)
    for key, (expected, standard_error) in truth.items():
        bound = 5 * standard_error + ALLOWANCE[key]
        assert ((got[key] - expected).abs() <= bound).all(), (key, got[key], expected, bound)


def run_particles(name, truth, **options):
    x = DATA.sample_noisy(PARTICLES, SIGMA_MAX, gen(0))
    out = SAMPLERS[name](DATA, x, default_sigmas(name), generator=gen(1), **options)
    assert out.shape == x.shape and torch.isfinite(out).all()
    check_distribution(out, truth)


@pytest.mark.parametrize("name", [n for n in STOCHASTIC if n not in BROWNIAN])
def test_samples_match_the_data_distribution(name, truth):
    run_particles(name, truth)


@pytest.mark.slow
@pytest.mark.parametrize("name", BROWNIAN)
def test_brownian_samples_match_the_data_distribution(name, truth):
    run_particles(name, truth)


@pytest.mark.parametrize("s_noise", [0.6, 1.4])
def test_the_distribution_check_rejects_a_wrong_noise_scale(s_noise, truth):
    """Negative control: too little or too much injected noise must fail the same check."""
    with pytest.raises(AssertionError):
        run_particles("DPM++ 2S a", truth, s_noise=s_noise)


# ---------------------------------------------------------------- noise scale


def test_ancestral_noise_is_ddim_eta_1_noise():
    """σ_up² = σ′²(σ² − σ′²)/σ² equals DDIM(η = 1)'s σ_t², ((1 − ᾱ′)/(1 − ᾱ))(1 − ᾱ/ᾱ′), over ᾱ′.

    Checked for t = 800 → 760 on SD's schedule, for the σ_up every ancestral/SDE sampler reports.
    For Euler a the whole step is DDIM(η = 1) with the same unit noise z.
    """
    a, a_next = (float(v) for v in DiscreteSchedule.stable_diffusion().alphas_cumprod[[800, 760]])
    ddim_var_vp = (1 - a_next) / (1 - a) * (1 - a / a_next)
    expected = ddim_var_vp / a_next
    sigmas = torch.tensor([math.sqrt((1 - a) / a), math.sqrt((1 - a_next) / a_next)], dtype=torch.float64)
    x = DATA.sample_noisy(16, float(sigmas[0]), gen(3))
    for name in [*ANCESTRAL, *BROWNIAN]:
        events = []
        SAMPLERS[name](DATA, x, sigmas, generator=gen(4), on_event=events.append)
        (step,) = events
        assert step.terms["sigma_up"] ** 2 == pytest.approx(expected, rel=1e-12), name
        assert step.noise is not None and step.noise.shape == x.shape
    # Euler a, step by step: x′ = D + σ_down·ε̂ + σ_up·z  ≡  DDIM(η = 1) in VP coordinates, mapped back.
    events = []
    SAMPLERS["Euler a"](DATA, x, sigmas, generator=gen(4), on_event=events.append)
    (step,) = events
    x_vp = x * math.sqrt(a)
    x0 = DATA(x, torch.full((16,), float(sigmas[0]), dtype=torch.float64))
    eps = (x_vp - math.sqrt(a) * x0) / math.sqrt(1 - a)
    ddim_vp = (
        math.sqrt(a_next) * x0
        + math.sqrt(1 - a_next - ddim_var_vp) * eps
        + math.sqrt(ddim_var_vp) * step.noise
    )
    assert float((step.x_next - ddim_vp / math.sqrt(a_next)).abs().max()) < 1e-12


class Recording:
    """The exact denoiser, keeping the inputs of every call."""

    def __init__(self):
        self.inputs = []

    def __call__(self, x, sigma):
        self.inputs.append(x)
        return DATA(x, sigma)


SINGLE_STAGE = [*ANCESTRAL, "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "DPM fast"]


@pytest.mark.parametrize("name", SINGLE_STAGE)
def test_injected_noise_is_sigma_up_times_unit_noise(name):
    """Switching the noise off (s_noise = 0) changes the first step by exactly σ_up·z, z ~ N(0, I)."""
    x = DATA.sample_noisy(PARTICLES, SIGMA_MAX, gen(10))
    sigmas = default_sigmas(name, 10)
    with_noise, without = [], []
    SAMPLERS[name](DATA, x, sigmas, generator=gen(11), on_event=with_noise.append)
    SAMPLERS[name](DATA, x, sigmas, generator=gen(11), on_event=without.append, s_noise=0.0)
    step = with_noise[0]
    z, sigma_up = step.noise, step.terms["sigma_up"]
    assert sigma_up > 0.5
    assert float((step.x_next - without[0].x_next - sigma_up * z).abs().max()) < 1e-9
    assert abs(float(z.mean())) < 5 / math.sqrt(z.numel())
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / z.numel())


def test_dpmpp_sde_first_stage_noise():
    """DPM++ SDE's first stage ends at σ_s = sqrt(σ_i·σ_{i+1}) with the ancestral split σ_i → σ_s:
    its second model call sees u(s_noise = 1) − u(s_noise = 0) = σ_up1·W, W ~ N(0, I)."""
    x = DATA.sample_noisy(PARTICLES, SIGMA_MAX, gen(10))
    sigmas = default_sigmas("DPM++ SDE", 10)
    runs = []
    for s_noise in (1.0, 0.0):
        recording, events = Recording(), []
        SAMPLERS["DPM++ SDE"](
            recording, x, sigmas, generator=gen(11), on_event=events.append, s_noise=s_noise
        )
        runs.append((recording.inputs[1], events[0]))
    (u_1, step), (u_0, _) = runs
    s, s_next = float(sigmas[0]), float(sigmas[1])
    sigma_s = math.sqrt(s * s_next)
    assert step.terms["sigma_s"] == pytest.approx(sigma_s, rel=1e-12)
    sigma_up_1 = step.terms["sigma_up_1"]
    assert sigma_up_1**2 == pytest.approx(sigma_s**2 * (s**2 - sigma_s**2) / s**2, rel=1e-12)
    w = (u_1 - u_0) / sigma_up_1
    assert abs(float(w.mean())) < 5 / math.sqrt(w.numel())
    assert abs(float(w.var()) - 1) < 5 * math.sqrt(2 / w.numel())


# ---------------------------------------------------------------- seeds

SEEDED = [*STOCHASTIC]


def seeded_run(name, x, generator, steps=20):
    return SAMPLERS[name](DATA, x, default_sigmas(name, steps), generator=generator)


@pytest.mark.parametrize("name", SEEDED)
def test_same_seed_same_output_different_seed_different_output(name):
    x = DATA.sample_noisy(4, SIGMA_MAX, gen(5))
    a = seeded_run(name, x, gen(42))
    b = seeded_run(name, x, gen(42))
    c = seeded_run(name, x, gen(43))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", [n for n in SEEDED if n != "DPM adaptive"])
def test_batch_with_per_image_generators_equals_single_runs(name):
    """A1111's per-image seeds: image i of a batch equals the same seed alone, bit for bit.

    (DPM adaptive is excluded: its step size is controlled by the error of the whole batch.)
    """
    seeds = [101, 202, 303]
    x = DATA.sample_noisy(3, SIGMA_MAX, gen(6))
    batch = seeded_run(name, x, [gen(s) for s in seeds])
    alone = torch.cat([seeded_run(name, x[i : i + 1], gen(s)) for i, s in enumerate(seeds)])
    assert torch.equal(batch, alone)
    listed = torch.cat([seeded_run(name, x[i : i + 1], [gen(s)]) for i, s in enumerate(seeds)])
    assert torch.equal(batch, listed)


@pytest.mark.parametrize("name", BROWNIAN)
def test_brownian_noise_is_consistent_across_step_counts(name):
    """The Brownian tree fixes one noise path per seed: the noise over [σ_a, σ_b] does not depend on
    how finely the schedule cuts it. Two half steps' σ_up·W combine to the full interval's increment."""
    sigmas = default_sigmas(name, 10)
    x = DATA.sample_noisy(2, SIGMA_MAX, gen(7))
    coarse, fine = [], []
    SAMPLERS[name](DATA, x, sigmas[[0, 2]], generator=gen(8), on_event=coarse.append)
    fine_sigmas = sigmas[[0, 1, 2]]
    SAMPLERS[name](DATA, x, fine_sigmas, generator=gen(8), on_event=fine.append)
    s0, s1, s2 = (float(v) for v in fine_sigmas)
    w_full = coarse[-1].noise * math.sqrt(s0 - s2)
    w_parts = fine[0].noise * math.sqrt(s0 - s1) + fine[1].noise * math.sqrt(s1 - s2)
    assert torch.allclose(w_full, w_parts, rtol=0, atol=1e-5)
