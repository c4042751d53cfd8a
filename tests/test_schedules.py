"""Sigma schedules against independent Python-float computations of their defining formulas."""

import math
import struct
from fractions import Fraction

import pytest
import torch
from scipy.special import betainc, betaincinv

from glassforge.sampling.noise_schedule import DiscreteSchedule
from glassforge.sampling.registry import UnknownNameError
from glassforge.sampling.samplers._common import SamplerInfo
from glassforge.sampling.schedules import SCHEDULES, build_sigmas

MS = DiscreteSchedule.stable_diffusion().sigmas
TABLE = [float(x) for x in MS]  # the stored float32 table, as Python floats
SMIN, SMAX = TABLE[0], TABLE[-1]
STEPS = (1, 2, 3, 10, 20, 30)
AYS_NAMES = ("Align Your Steps", "Align Your Steps GITS", "Align Your Steps 11", "Align Your Steps 32")


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def values(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t]


def approx_list(expected, rel=1e-6, abs=1e-12):
    return pytest.approx([f32(v) for v in expected], rel=rel, abs=abs)


def py_t_to_sigma(t: float) -> float:
    lo = math.floor(t)
    hi = min(lo + 1, 999)
    return math.exp((1 - (t - lo)) * math.log(TABLE[lo]) + (t - lo) * math.log(TABLE[hi]))


def ddim_count(n: int) -> int:
    ss = max(1000 // n, 1)
    return (998 // ss) + 1  # indices 1, 1+ss, … ≤ 999


def expected_first(name: str, n: int) -> float:
    if name == "DDIM":
        return TABLE[1 + (ddim_count(n) - 1) * max(1000 // n, 1)]
    if name in AYS_NAMES:
        return f32(14.615)
    return SMAX


# ---------------------------------------------------------------- properties of every entry


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_is_decreasing_and_ends_in_zero(name, steps):
    sigmas = SCHEDULES[name](MS, steps)
    assert sigmas.dtype == torch.float32 and sigmas.ndim == 1
    assert bool(torch.isfinite(sigmas).all())
    assert float(sigmas[-1]) == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all()), values(sigmas)
    expected_len = ddim_count(steps) + 1 if name == "DDIM" else steps + 1
    assert len(sigmas) == expected_len
    assert float(sigmas[0]) == pytest.approx(expected_first(name, steps), rel=1e-6)


def test_every_entry_documents_itself():
    for name in SCHEDULES:
        info = SCHEDULES[name]
        assert info.name == name
        for text in (info.description, info.formula):
            assert text and "\n" not in text


# ---------------------------------------------------------------- σ-range schedules


def karras_ref(n, lo, hi, rho):
    if n == 1:
        return [hi, 0.0]
    a, b = hi ** (1 / rho), lo ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]


@pytest.mark.parametrize("n", (1, 2, 3, 10, 30))
def test_karras_formula(n):
    assert values(SCHEDULES["Karras"](MS, n)) == approx_list(karras_ref(n, SMIN, SMAX, 7.0))


def test_karras_sd1_10_steps_reference_values():
    ref = [14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292, 0.0]
    assert values(SCHEDULES["karras"](MS, 10)) == pytest.approx(ref, abs=5e-5)


def test_uniform_matches_log_interpolated_timesteps():
    got = values(SCHEDULES["Uniform"](MS, 10))
    assert got == approx_list([py_t_to_sigma(999 * (1 - i / 9)) for i in range(10)] + [0.0])
    ref = [14.6146, 7.8399, 4.6092, 2.9183, 1.9502, 1.3449, 0.9324, 0.6250, 0.3687, 0.0292, 0.0]
    assert got == pytest.approx(ref, abs=5e-5)
    # for SD, t(σ_max) = 999 and t(σ_min) = 0, so Normal and Automatic (no sampler) are the same list
    for n in (1, 7, 30):
        assert torch.allclose(SCHEDULES["Normal"](MS, n), SCHEDULES["Uniform"](MS, n), rtol=1e-7)
        assert torch.equal(SCHEDULES["Automatic"](MS, n), SCHEDULES["Uniform"](MS, n))


@pytest.mark.parametrize("n", (2, 10, 30))
def test_exponential_is_log_uniform(n):
    sig = SCHEDULES["Exponential"](MS, n).double()
    ratios = (sig[:-2] / sig[1:-1]).log()
    assert torch.allclose(ratios, torch.full_like(ratios, math.log(SMAX / SMIN) / (n - 1)), rtol=1e-6)
    assert float(sig[0]) == pytest.approx(SMAX, rel=1e-7) and float(sig[-2]) == pytest.approx(SMIN, rel=1e-7)
    # Polyexponential with its default ρ = 1 is the same schedule
    assert torch.allclose(SCHEDULES["Polyexponential"](MS, n), SCHEDULES["Exponential"](MS, n), rtol=1e-6)


def test_polyexponential_rho():
    n, rho = 10, 2.5
    ref = [math.exp((1 - i / (n - 1)) ** rho * math.log(SMAX / SMIN) + math.log(SMIN)) for i in range(n)]
    assert values(SCHEDULES["polyexponential"](MS, n, rho=rho)) == approx_list([*ref, 0.0])


@pytest.mark.parametrize("n", (2, 10, 30))
def test_kl_optimal_tan_formula(n):
    ref = [math.tan(i / (n - 1) * math.atan(SMIN) + (1 - i / (n - 1)) * math.atan(SMAX)) for i in range(n)]
    assert values(SCHEDULES["kl_optimal"](MS, n)) == approx_list([*ref, 0.0])


@pytest.mark.parametrize("n", (1, 10, 30))
def test_sgm_uniform_drops_the_last_of_n_plus_1_timesteps(n):
    ref = [py_t_to_sigma(999 * (1 - i / n)) for i in range(n)]
    assert values(SCHEDULES["sgm_uniform"](MS, n)) == approx_list([*ref, 0.0])
    assert SCHEDULES["SGMUniform"] is SCHEDULES["SGM Uniform"]


def test_sigma_overrides_and_rho():
    lo, hi = 0.1, 10.0
    assert values(SCHEDULES["Karras"](MS, 10, sigma_min=lo, sigma_max=hi, rho=3)) == approx_list(
        karras_ref(10, lo, hi, 3.0)
    )
    # 0 and None mean "the model's table ends"
    base = SCHEDULES["Karras"](MS, 10)
    assert torch.equal(SCHEDULES["Karras"](MS, 10, sigma_min=0, sigma_max=None, rho=0), base)
    for name in ("Karras", "Exponential", "Polyexponential", "KL Optimal", "Normal", "Beta"):
        sig = SCHEDULES[name](MS, 10, sigma_min=lo, sigma_max=hi)
        assert float(sig[0]) == pytest.approx(hi, rel=1e-6), name
        assert float(sig[-2]) == pytest.approx(lo, rel=1e-6), name
    sgm = SCHEDULES["SGM Uniform"](MS, 10, sigma_min=lo, sigma_max=hi)
    assert float(sgm[0]) == pytest.approx(hi, rel=1e-6) and float(sgm[-2]) > lo
    assert float(SCHEDULES["Linear Quadratic"](MS, 10, sigma_max=1.0)[0]) == 1.0
    with pytest.raises(ValueError, match="sigma_min"):
        SCHEDULES["Karras"](MS, 10, sigma_min=20.0)


def test_normal_nearest_timestep_rule():
    # σ_max = 10 sits between table entries: the nearest rule snaps t(σ_max) to an integer timestep
    t_near = min(range(1000), key=lambda k: abs(math.log(10.0) - math.log(TABLE[k])))
    sig = SCHEDULES["Normal"](MS, 5, sigma_max=10.0, timestep_rule="nearest")
    assert float(sig[0]) == pytest.approx(TABLE[t_near], rel=1e-6)
    with pytest.raises(ValueError, match="timestep rule"):
        SCHEDULES["Normal"](MS, 5, timestep_rule="round")


# ---------------------------------------------------------------- picks from the table


@pytest.mark.parametrize("n", (1, 2, 3, 7, 10, 20, 30))
def test_simple_picks_every_t_over_n_th_entry(n):
    ref = [TABLE[999 - (k * 1000) // n] for k in range(n)]
    assert values(SCHEDULES["simple"](MS, n)) == [*ref, 0.0]


def test_simple_uses_float_stride_like_comfyui():
    # 19·(1000/38) = 499.99999999999994 in floating point, so k = 19 picks table[−500], not table[−501]
    assert values(SCHEDULES["Simple"](MS, 38))[19] == TABLE[999 - 499]


def test_ddim_picks_uniform_timesteps():
    assert values(SCHEDULES["ddim_uniform"](MS, 20)) == [TABLE[t] for t in range(951, 0, -50)] + [0.0]
    thirty = SCHEDULES["DDIM"](MS, 30)  # 1000 // 30 = 33 → t = 1, 34, …, 991: 31 steps
    assert len(thirty) == 32 and float(thirty[0]) == TABLE[991] and float(thirty[-2]) == TABLE[1]


def test_turbo_timesteps():
    assert values(SCHEDULES["turbo"](MS, 4)) == [TABLE[999], TABLE[749], TABLE[499], TABLE[249], 0.0]
    for n in (1, 3, 10, 30):
        ts = [round(Fraction(1000 * k, n) - 1) for k in range(n, 0, -1)]  # exact, round half to even
        assert values(SCHEDULES["Turbo"](MS, n)) == [TABLE[t] for t in ts] + [0.0]


def test_beta_a1111_is_linear_in_sigma_at_beta_quantiles():
    n, a, b = 10, 0.6, 0.6
    sig = values(SCHEDULES["Beta"](MS, n))
    for k in range(n):
        u = (sig[k] - SMIN) / (SMAX - SMIN)  # Beta CDF of the normalised σ gives back 1 − k/(n−1)
        assert betainc(a, b, min(max(u, 0.0), 1.0)) == pytest.approx(1 - k / (n - 1), abs=2e-6)
    other = values(SCHEDULES["beta"](MS, n, alpha=0.5, beta=0.7))
    ref = [SMIN + float(betaincinv(0.5, 0.7, 1 - k / (n - 1))) * (SMAX - SMIN) for k in range(n)]
    assert other == approx_list([*ref, 0.0])


@pytest.mark.parametrize("n", (1, 10, 30, 300))
def test_beta_comfyui_picks_table_timesteps_without_duplicates(n):
    ts = [round(float(betaincinv(0.6, 0.6, 1 - k / n)) * 999) for k in range(n)]
    ts = [t for i, t in enumerate(ts) if i == 0 or t != ts[i - 1]]
    sig = SCHEDULES["beta"](MS, n, convention="comfyui")
    assert values(sig) == [TABLE[t] for t in ts] + [0.0]
    assert bool((sig[1:] < sig[:-1]).all()) and float(sig[0]) == SMAX
    if n == 300:
        assert len(sig) < n + 1  # duplicates near both ends were dropped
    else:
        assert len(sig) == n + 1
    with pytest.raises(ValueError, match="sigma_min"):
        SCHEDULES["beta"](MS, n, convention="comfyui", sigma_min=0.1)


def linear_quadratic_ref(n, hi, tau=0.025):
    if n == 1:
        return [hi, 0.0]
    lin = n // 2
    quad = n - lin
    d = lin - tau * n
    a = d / (lin * quad**2)
    b = tau / lin - 2 * d / quad**2
    c = a * lin**2
    ramp = [i * tau / lin for i in range(lin)] + [a * i**2 + b * i + c for i in range(lin, n)] + [1.0]
    return [(1 - r) * hi for r in ramp]


@pytest.mark.parametrize("n", (1, 2, 3, 10, 30))
def test_linear_quadratic(n):
    assert values(SCHEDULES["linear_quadratic"](MS, n)) == approx_list(linear_quadratic_ref(n, SMAX))
    if n >= 2:  # the quadratic part meets the linear one at τ and reaches 1 one step after the end
        lin, quad = n // 2, n - n // 2
        d = lin - 0.025 * n
        a, b = d / (lin * quad**2), 0.025 / lin - 2 * d / quad**2
        assert a * lin**2 + b * lin + a * lin**2 == pytest.approx(0.025)
        assert a * n**2 + b * n + a * lin**2 == pytest.approx(1.0)


# ---------------------------------------------------------------- Align Your Steps

AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
AYS_SD1_PRECISE = (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                   0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582)  # fmt: skip
AYS_SDXL_PRECISE = (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                    0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582)  # fmt: skip


def loglinear_ref(table, n):
    """Position x = i/(n−1) on the table's evenly spaced grid, linear in log σ between its neighbours."""
    if n == 1:
        return [table[0]]
    out = []
    for i in range(n):
        p = i / (n - 1) * (len(table) - 1)
        j = min(math.floor(p), len(table) - 2)
        w = p - j
        out.append(math.exp((1 - w) * math.log(table[j]) + w * math.log(table[j + 1])))
    return out


@pytest.mark.parametrize("model_type, table", [("SD1", AYS_SD1), ("SDXL", AYS_SDXL)])
def test_ays_a1111_tables(model_type, table):
    # A1111: n = steps points; 11 steps is the table itself, other counts are resampled, then 0
    for name in ("Align Your Steps", "align_your_steps_11"):
        assert values(SCHEDULES[name](MS, 11, model_type=model_type)) == [f32(v) for v in table] + [0.0]
    for n in (1, 5, 10, 30):
        got = values(SCHEDULES["align_your_steps"](MS, n, model_type=model_type))
        assert got == approx_list([*loglinear_ref(table, n), 0.0])


@pytest.mark.parametrize("model_type, table", [("SD1", AYS_SD1_PRECISE), ("SDXL", AYS_SDXL_PRECISE)])
def test_ays_precise_is_comfyui_node(model_type, table):
    # ComfyUI: steps+1 points (10 steps = the 11-point table), the last replaced by 0
    got = values(SCHEDULES["Align Your Steps"](MS, 10, model_type=model_type, precise=True))
    assert got == [f32(v) for v in table[:10]] + [0.0]
    got = values(SCHEDULES["Align Your Steps"](MS, 4, model_type=model_type, precise=True))
    assert got == approx_list([*loglinear_ref(table, 5)[:4], 0.0])


def test_ays_gits_and_32_tables():
    gits_sd1 = (14.615, 4.617, 2.507, 1.236, 0.702, 0.402, 0.240, 0.156, 0.104, 0.094, 0.029)
    assert values(SCHEDULES["align_your_steps_GITS"](MS, 11)) == [f32(v) for v in gits_sd1] + [0.0]
    assert values(SCHEDULES["Align Your Steps GITS"](MS, 11, model_type="SDXL"))[1] == f32(4.734)
    ays32 = SCHEDULES["align_your_steps_32"](MS, 32, model_type="SDXL")
    assert len(ays32) == 33 and float(ays32[1]) == f32(11.1491618) and float(ays32[-2]) == f32(0.015)
    with pytest.raises(ValueError, match="model_type"):
        SCHEDULES["Align Your Steps"](MS, 10, model_type="SD3")


# ---------------------------------------------------------------- names


def test_names_and_aliases_resolve():
    comfy = {
        "simple": "Simple", "sgm_uniform": "SGM Uniform", "karras": "Karras", "exponential": "Exponential",
        "ddim_uniform": "DDIM", "beta": "Beta", "normal": "Normal", "linear_quadratic": "Linear Quadratic",
        "kl_optimal": "KL Optimal",
    }  # fmt: skip
    a1111 = {
        "automatic": "Automatic", "uniform": "Uniform", "polyexponential": "Polyexponential",
        "SGMUniform": "SGM Uniform", "align_your_steps": "Align Your Steps", "ddim": "DDIM", "turbo": "Turbo",
        "align_your_steps_GITS": "Align Your Steps GITS", "align_your_steps_11": "Align Your Steps 11",
        "align_your_steps_32": "Align Your Steps 32",
    }  # fmt: skip
    for alias, label in {**comfy, **a1111}.items():
        assert SCHEDULES[alias] is SCHEDULES[label], alias
        assert SCHEDULES[alias].name == label
    assert SCHEDULES["KARRAS"] is SCHEDULES["Karras"]


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        SCHEDULES["cosine_squared"]
    assert err.value.known == list(SCHEDULES)
    assert "Karras" in str(err.value) and "Align Your Steps 32" in str(err.value)
    assert len(SCHEDULES) == 17


# ---------------------------------------------------------------- build_sigmas


def dummy_sampler(denoiser, x, sigmas, *, generator=None, on_event=None, **options):
    return x


def sampler(default_schedule=None, discard=False):
    return SamplerInfo(name="Test", fn=dummy_sampler, description="", formula="", reference="",
                       default_schedule=default_schedule, discard_penultimate_sigma=discard)  # fmt: skip


def test_build_sigmas_resolves_automatic():
    karras10 = SCHEDULES["Karras"](MS, 10)
    assert torch.equal(build_sigmas(MS, 10, "Automatic", sampler=sampler("Karras")), karras10)
    assert torch.equal(build_sigmas(MS, 10, "automatic", sampler=sampler("karras")), karras10)
    uniform10 = SCHEDULES["Uniform"](MS, 10)
    assert torch.equal(build_sigmas(MS, 10, "Automatic", sampler=sampler(None)), uniform10)
    assert torch.equal(build_sigmas(MS, 10), uniform10)
    # an explicit schedule wins over the sampler's default
    assert torch.equal(
        build_sigmas(MS, 10, "Exponential", sampler=sampler("Karras")), SCHEDULES["Exponential"](MS, 10)
    )


def test_build_sigmas_discards_penultimate_sigma():
    full = values(SCHEDULES["Karras"](MS, 11))  # 12 values
    got = build_sigmas(MS, 10, "Karras", sampler=sampler(discard=True))
    assert len(got) == 11
    assert values(got) == full[:10] + full[11:]
    assert float(got[-2]) == full[9] and full[10] not in values(got)
    assert torch.equal(build_sigmas(MS, 10, "Karras", discard_penultimate_sigma=True), got)
    no_discard = build_sigmas(
        MS, 10, "Karras", sampler=sampler(discard=True), discard_penultimate_sigma=False
    )
    assert torch.equal(no_discard, SCHEDULES["Karras"](MS, 10))


def test_build_sigmas_denoise_keeps_the_tail():
    assert torch.equal(build_sigmas(MS, 10, "Karras", denoise=0.5), SCHEDULES["Karras"](MS, 20)[-11:])
    assert torch.equal(build_sigmas(MS, 10, "Karras", denoise=0.3), SCHEDULES["Karras"](MS, 33)[-11:])
    assert torch.equal(build_sigmas(MS, 10, "Karras", denoise=1.0), SCHEDULES["Karras"](MS, 10))
    assert len(build_sigmas(MS, 10, "Karras", denoise=0.0)) == 0
    # discard first (on the longer schedule), then the tail, as ComfyUI
    longer = values(SCHEDULES["Karras"](MS, 21))
    got = build_sigmas(MS, 10, "Karras", sampler=sampler(discard=True), denoise=0.5)
    assert values(got) == (longer[:-2] + longer[-1:])[-11:]
    with pytest.raises(ValueError, match="denoise"):
        build_sigmas(MS, 10, "Karras", denoise=1.5)


def test_build_sigmas_options():
    # σ overrides and ρ are ignored by schedules without them (as A1111), honoured by the others
    assert torch.equal(build_sigmas(MS, 10, "Uniform", sigma_min=0.1, sigma_max=10.0, rho=3.0),
                       SCHEDULES["Uniform"](MS, 10))  # fmt: skip
    got = build_sigmas(MS, 10, "Karras", sigma_min=0.1, sigma_max=10.0, rho=3.0)
    assert values(got) == approx_list(karras_ref(10, 0.1, 10.0, 3.0))
    got = build_sigmas(MS, 10, "Exponential", sigma_min=0.1, rho=3.0)
    assert float(got[-2]) == pytest.approx(0.1, rel=1e-6)
    assert torch.equal(build_sigmas(MS, 10, "Beta", convention="comfyui"),
                       SCHEDULES["Beta"](MS, 10, convention="comfyui"))  # fmt: skip
    with pytest.raises(TypeError):
        build_sigmas(MS, 10, "Karras", alpha=0.5)  # not a Karras option
    with pytest.raises(ValueError, match="steps"):
        build_sigmas(MS, 0, "Karras")
    with pytest.raises(UnknownNameError):
        build_sigmas(MS, 10, "nope")
