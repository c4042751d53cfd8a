"""DiscreteSchedule against an independent pure-Python (float64) computation of the SD noise schedule."""

import math
import struct

import pytest
import torch

from glassforge.sampling.noise_schedule import (
    ZERO_SNR_LAST_ALPHA_CUMPROD,
    DiscreteSchedule,
    make_betas,
    sigma_to_t,
    t_to_sigma,
)


def f32(x: float) -> float:
    """x rounded to float32, the way the σ table is stored."""
    return struct.unpack("f", struct.pack("f", x))[0]


def py_sd_schedule(timesteps=1000, start=0.00085, end=0.012):
    """β, ᾱ, σ of SD's "scaled linear" schedule with Python floats."""
    a, b = math.sqrt(start), math.sqrt(end)
    betas = [(a + t / (timesteps - 1) * (b - a)) ** 2 for t in range(timesteps)]
    alphas_cumprod, prod = [], 1.0
    for beta in betas:
        prod *= 1 - beta
        alphas_cumprod.append(prod)
    sigmas = [math.sqrt((1 - ac) / ac) for ac in alphas_cumprod]
    return betas, alphas_cumprod, sigmas


BETAS, ALPHAS_CUMPROD, SIGMAS64 = py_sd_schedule()
TABLE32 = [f32(s) for s in SIGMAS64]  # what the model stores
SD = DiscreteSchedule.stable_diffusion()


def py_t_to_sigma(table, t):
    lo = math.floor(t)
    hi = min(lo + 1, len(table) - 1)
    w = t - lo
    return math.exp((1 - w) * math.log(table[lo]) + w * math.log(table[hi]))


def py_sigma_to_t(table, sigma):
    """Solve σ(t) = sigma for t by bisection over the log-linear interpolant (it increases in t)."""
    lo, hi = 0.0, float(len(table) - 1)
    for _ in range(100):
        mid = (lo + hi) / 2
        if py_t_to_sigma(table, mid) < sigma:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_sd_sigma_range_is_float64_computation_stored_as_float32():
    assert SD.sigmas.dtype == torch.float32 and SD.alphas_cumprod.dtype == torch.float64
    assert SD.sigmas.shape == (1000,)
    assert SD.sigma_min == f32(SIGMAS64[0]) and SD.sigma_max == f32(SIGMAS64[-1])
    assert abs(SIGMAS64[0] - 0.0291672) < 5e-8
    assert abs(SIGMAS64[-1] - 14.614641) < 5e-7
    # a float32 cumprod would give σ_max = 14.6146555 (1.4e-5 away); the stored value is the float64 one
    assert abs(SD.sigma_max - 14.614641) < 2e-6
    assert abs(SD.sigma_max - 14.6146555) > 1e-5


def test_alphas_cumprod_matches_python_product_and_reference_table():
    assert torch.allclose(SD.betas, torch.tensor(BETAS, dtype=torch.float64), rtol=1e-13, atol=0)
    assert torch.allclose(SD.alphas_cumprod, torch.tensor(ALPHAS_CUMPROD, dtype=torch.float64), rtol=1e-12)
    # rows of the table in math_and_explainers §1.1: t → (β_t, ᾱ_t, σ_t)
    rows = {
        999: (0.012000, 0.004660, 14.61464),
        900: (0.010318, 0.014151, 8.34660),
        750: (0.008012, 0.056170, 4.09916),
        500: (0.004815, 0.276333, 1.61828),
        250: (0.002428, 0.673793, 0.69580),
        100: (0.001384, 0.894223, 0.34393),
    }
    for t, (beta, ac, sigma) in rows.items():
        assert BETAS[t] == pytest.approx(beta, abs=5e-7)
        assert ALPHAS_CUMPROD[t] == pytest.approx(ac, abs=5e-7)
        assert SIGMAS64[t] == pytest.approx(sigma, abs=5e-6)
        assert float(SD.sigmas[t]) == pytest.approx(SIGMAS64[t], rel=1e-7)
    # ᾱ = 1/(1 + σ²)
    assert torch.allclose(SD.alphas_cumprod, 1 / (1 + SD.sigmas.double() ** 2), rtol=1e-6)


@pytest.mark.parametrize("sigma, expected", [(10.0, 933.5), (1.0, 353.9), (0.1, 10.38)])
def test_sigma_to_t_interp_matches_bisection(sigma, expected):
    t = float(SD.sigma_to_t(sigma))
    assert t == pytest.approx(py_sigma_to_t(TABLE32, sigma), abs=1e-6)
    assert t == pytest.approx(expected, abs=0.006 if expected < 100 else 0.06)


def test_sigma_to_t_vectorised_and_clamped():
    sigmas = torch.logspace(math.log10(0.03), math.log10(14.6), 37, dtype=torch.float64)
    ts = sigma_to_t(SD.sigmas, sigmas)
    assert ts.shape == sigmas.shape
    expected = torch.tensor([py_sigma_to_t(TABLE32, float(s)) for s in sigmas], dtype=torch.float64)
    assert torch.allclose(ts, expected, atol=1e-6)
    assert float(SD.sigma_to_t(100.0)) == 999.0  # above σ_max
    assert float(SD.sigma_to_t(1e-3)) == 0.0  # below σ_min
    assert float(SD.sigma_to_t(SD.sigma_max)) == 999.0 and float(SD.sigma_to_t(SD.sigma_min)) == 0.0


def test_nearest_rule_is_argmin_of_log_distance():
    sigmas = [0.02, 0.0291672, 0.05, 0.3, 1.0, 1.61828, 3.3, 10.0, 14.0, 20.0]
    # geometric midpoints between neighbours fall on either side depending on rounding; pick off-midpoint ones
    sigmas += [math.exp(0.3 * math.log(TABLE32[k]) + 0.7 * math.log(TABLE32[k + 1])) for k in (5, 400, 998)]
    nearest = SD.with_timestep_rule("nearest")
    for s in sigmas:
        dists = [abs(math.log(s) - math.log(x)) for x in TABLE32]
        expected = min(range(len(dists)), key=dists.__getitem__)
        assert float(nearest.sigma_to_t(s)) == expected
        assert float(SD.sigma_to_t(s, rule="nearest")) == expected
    # the 0.3/0.7 mixes: interp gives k + 0.7, nearest rounds up
    assert float(SD.sigma_to_t(sigmas[-2])) == pytest.approx(400.7, abs=1e-6)
    assert float(nearest.sigma_to_t(sigmas[-2])) == 401.0


def test_t_to_sigma_and_round_trip():
    ts = torch.tensor([0.0, 0.25, 1.0, 10.38, 353.9, 500.0, 933.5, 998.5, 999.0], dtype=torch.float64)
    sig = t_to_sigma(SD.sigmas, ts)
    expected = [py_t_to_sigma(TABLE32, float(t)) for t in ts]
    assert torch.allclose(sig, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(t_to_sigma(SD.sigmas, torch.arange(1000.0)), SD.sigmas.double(), rtol=1e-12)
    assert torch.allclose(SD.sigma_to_t(SD.t_to_sigma(ts)), ts, atol=1e-8)
    sigmas = torch.logspace(math.log10(SD.sigma_min), math.log10(SD.sigma_max), 101, dtype=torch.float64)
    assert torch.allclose(SD.t_to_sigma(SD.sigma_to_t(sigmas)), sigmas, rtol=1e-10)


def test_zero_terminal_snr():
    zsnr = DiscreteSchedule.stable_diffusion(zero_terminal_snr=True)
    ac = zsnr.alphas_cumprod
    assert float(ac[-1]) == ZERO_SNR_LAST_ALPHA_CUMPROD == 4.8973451890853435e-08
    assert float(ac[0]) == pytest.approx(ALPHAS_CUMPROD[0], rel=1e-14)
    # Lin et al. Alg. 1 with Python floats at a few interior timesteps
    s0, sl = math.sqrt(ALPHAS_CUMPROD[0]), math.sqrt(ALPHAS_CUMPROD[-1])
    for t in (1, 250, 500, 900, 998):
        expected = ((math.sqrt(ALPHAS_CUMPROD[t]) - sl) * s0 / (s0 - sl)) ** 2
        assert float(ac[t]) == pytest.approx(expected, rel=1e-12)
    snr = ac / (1 - ac)
    assert bool((snr[1:] < snr[:-1]).all())
    assert zsnr.sigma_max == pytest.approx(
        math.sqrt((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08), rel=1e-6
    )
    assert zsnr.sigma_min == pytest.approx(SD.sigma_min, rel=1e-6)


def test_linear_and_cosine_betas():
    lin = make_betas("linear", 1000, 1e-4, 0.02)
    assert float(lin[0]) == pytest.approx(1e-4, rel=1e-12) and float(lin[-1]) == pytest.approx(
        0.02, rel=1e-12
    )
    diffs = lin[1:] - lin[:-1]
    assert torch.allclose(diffs, torch.full_like(diffs, (0.02 - 1e-4) / 999), rtol=1e-8)
    scaled = make_betas("scaled_linear")
    root_diffs = scaled[1:].sqrt() - scaled[:-1].sqrt()
    assert torch.allclose(root_diffs, torch.full_like(root_diffs, float(root_diffs[0])), rtol=1e-8)

    # cosine: ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2), as long as no β has been clipped at 0.999
    T, s = 1000, 8e-3
    betas = make_betas("cosine", T)
    assert float(betas.max()) <= 0.999
    ac = torch.cumprod(1 - betas, 0)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    unclipped = int((betas < 0.999).long().cumprod(0).sum())
    assert unclipped > 990
    for t in (1, 10, 100, 500, 900, unclipped):
        assert float(ac[t - 1]) == pytest.approx(f(t) / f(0), rel=1e-9)
    cos_sched = DiscreteSchedule.from_betas("cosine")
    assert bool((cos_sched.sigmas[1:] > cos_sched.sigmas[:-1]).all())


def test_bad_names_raise():
    with pytest.raises(ValueError, match="beta schedule"):
        make_betas("quadratic")
    with pytest.raises(ValueError, match="timestep rule"):
        DiscreteSchedule.stable_diffusion(timestep_rule="round")
    with pytest.raises(ValueError, match="timestep rule"):
        sigma_to_t(SD.sigmas, 1.0, rule="round")
