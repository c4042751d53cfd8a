"""Sigma schedules: pure functions from the model's σ table and a step count to a list of σ.

Call shape: ``SCHEDULES[name](model_sigmas, steps, **options)`` where ``model_sigmas`` is the model's
ascending discrete σ table (e.g. ``DiscreteSchedule.stable_diffusion().sigmas``). Each returns a
strictly decreasing float32 tensor that ends in 0 (normally ``steps + 1`` values; DDIM and ComfyUI's
Beta can give a different count, as documented on the entry). Values are computed in float64 and
rounded to float32 once, at the end.

Entries are registered under the A1111/Forge display labels; A1111's internal names and ComfyUI's
scheduler names are aliases. :func:`build_sigmas` is what a sampler run calls: it resolves
"Automatic" to the sampler's default schedule, drops the penultimate σ for samplers that want it
and applies ComfyUI's ``denoise`` rule.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .noise_schedule import TIMESTEP_RULES, sigma_to_t, t_to_sigma
from .registry import Registry

if TYPE_CHECKING:
    from .samplers._common import SamplerInfo

ScheduleFn = Callable[..., Tensor]


@dataclass(frozen=True)
class ScheduleInfo:
    name: str  # A1111/Forge display label
    fn: ScheduleFn
    description: str
    formula: str
    aliases: tuple[str, ...] = ()  # A1111 internal names, ComfyUI names
    needs_model_sigmas: bool = False  # reads the model's σ table beyond its two ends
    default_rho: float | None = None  # schedules with a ρ option (A1111 writes "Schedule rho")
    uses_sigma_range: bool = False  # honours the sigma_min / sigma_max overrides

    def __call__(self, model_sigmas: Tensor, steps: int, **options: Any) -> Tensor:
        return self.fn(model_sigmas, steps, **options)


SCHEDULES: Registry[ScheduleInfo] = Registry("schedule")

# Options a UI may always send (A1111's settings); build_sigmas drops them for schedules without them.
COMMON_OPTIONS = ("sigma_min", "sigma_max", "rho")

# ---------------------------------------------------------------- helpers


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)


def _sigma_range(
    model_sigmas: Tensor, sigma_min: float | None, sigma_max: float | None
) -> tuple[float, float]:
    """The (σ_min, σ_max) to use: overrides, where None or 0 means the model table's end."""
    lo = float(sigma_min) if sigma_min else float(model_sigmas[0])
    hi = float(sigma_max) if sigma_max else float(model_sigmas[-1])
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={lo}, sigma_max={hi}")
    return lo, hi


def _linspace(start: float, end: float, n: int) -> Tensor:
    return torch.linspace(start, end, n, dtype=torch.float64)


def _append_zero(sigmas: Tensor) -> Tensor:
    sigmas = sigmas.to(torch.float64)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def _check_rule(rule: str) -> str:
    if rule not in TIMESTEP_RULES:
        raise ValueError(f"unknown timestep rule {rule!r}; expected one of {', '.join(TIMESTEP_RULES)}")
    return rule


# ---------------------------------------------------------------- σ-range schedules (k-diffusion)


def karras(model_sigmas, steps, *, sigma_min=None, sigma_max=None, rho=7.0):
    """Karras et al. (2022), eq. 5: uniform steps in σ^{1/ρ}."""
    n = _check_steps(steps)
    lo, hi = _sigma_range(model_sigmas, sigma_min, sigma_max)
    rho = float(rho) if rho else 7.0
    ramp = _linspace(0, 1, n)
    return _append_zero((hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho)


def exponential(model_sigmas, steps, *, sigma_min=None, sigma_max=None):
    """Uniform steps in log σ (k-diffusion ``get_sigmas_exponential``)."""
    n = _check_steps(steps)
    lo, hi = _sigma_range(model_sigmas, sigma_min, sigma_max)
    return _append_zero(_linspace(math.log(hi), math.log(lo), n).exp())


def polyexponential(model_sigmas, steps, *, sigma_min=None, sigma_max=None, rho=1.0):
    """Log σ on a polynomial ramp (k-diffusion ``get_sigmas_polyexponential``); ρ = 1 is Exponential."""
    n = _check_steps(steps)
    lo, hi = _sigma_range(model_sigmas, sigma_min, sigma_max)
    rho = float(rho) if rho else 1.0
    ramp = _linspace(1, 0, n) ** rho
    return _append_zero((ramp * (math.log(hi) - math.log(lo)) + math.log(lo)).exp())


def kl_optimal(model_sigmas, steps, *, sigma_min=None, sigma_max=None):
    """Uniform steps in atan σ (Sabour et al. 2024, Align Your Steps, Theorem 3.1), ComfyUI's form."""
    n = _check_steps(steps)
    lo, hi = _sigma_range(model_sigmas, sigma_min, sigma_max)
    u = _linspace(0, 1, n)
    return _append_zero(torch.tan(u * math.atan(lo) + (1 - u) * math.atan(hi)))


# ---------------------------------------------------------------- uniform in timestep


def uniform(model_sigmas, steps):
    """k-diffusion ``DiscreteSchedule.get_sigmas``: evenly spaced fractional timesteps T−1 … 0."""
    n = _check_steps(steps)
    t = _linspace(len(model_sigmas) - 1, 0, n)
    return _append_zero(t_to_sigma(model_sigmas, t))


def _t_range(model_sigmas, sigma_min, sigma_max, rule) -> tuple[float, float]:
    lo, hi = _sigma_range(model_sigmas, sigma_min, sigma_max)
    _check_rule(rule)
    return float(sigma_to_t(model_sigmas, hi, rule)), float(sigma_to_t(model_sigmas, lo, rule))


def normal(model_sigmas, steps, *, sigma_min=None, sigma_max=None, timestep_rule="interp"):
    """Evenly spaced timesteps from t(σ_max) to t(σ_min) (ComfyUI ``normal``, A1111 "Normal")."""
    n = _check_steps(steps)
    start, end = _t_range(model_sigmas, sigma_min, sigma_max, timestep_rule)
    return _append_zero(t_to_sigma(model_sigmas, _linspace(start, end, n)))


def sgm_uniform(model_sigmas, steps, *, sigma_min=None, sigma_max=None, timestep_rule="interp"):
    """n of n+1 evenly spaced timesteps from t(σ_max) towards t(σ_min) (Stability's SGM "uniform")."""
    n = _check_steps(steps)
    start, end = _t_range(model_sigmas, sigma_min, sigma_max, timestep_rule)
    return _append_zero(t_to_sigma(model_sigmas, _linspace(start, end, n + 1)[:-1]))


# ---------------------------------------------------------------- picks from the σ table


def simple(model_sigmas, steps):
    """Every (T/n)-th table entry from the top (ComfyUI ``simple``)."""
    n = _check_steps(steps)
    ss = len(model_sigmas) / n  # a float, as ComfyUI: int(19 · 1000/38) = 499, not 500
    idx = [len(model_sigmas) - 1 - int(k * ss) for k in range(n)]
    return _append_zero(model_sigmas.double()[idx])


def ddim(model_sigmas, steps):
    """The table at t = 1, 1 + ss, 1 + 2·ss, … (ss = T // n), reversed (ComfyUI ``ddim_uniform``)."""
    n = _check_steps(steps)
    ss = max(len(model_sigmas) // n, 1)
    idx = list(range(1, len(model_sigmas), ss))[::-1]
    return _append_zero(model_sigmas.double()[idx])


def turbo(model_sigmas, steps):
    """SD-Turbo's timesteps round(k·T/n − 1), k = n … 1 (Forge 2 "Turbo")."""
    n = _check_steps(steps)
    size = len(model_sigmas)
    # float32 arithmetic and round-half-even, as Forge computes it (matters for n = 208, 240, …)
    t = (torch.arange(1, n + 1, dtype=torch.float32) * float(size / n) - 1).flip(0).round()
    return _append_zero(model_sigmas.double()[t.long().clamp(0, size - 1)])


def beta(model_sigmas, steps, *, sigma_min=None, sigma_max=None, alpha=0.6, beta=0.6, convention="a1111"):
    """Beta-distribution quantiles (Lee et al. 2024, arXiv 2407.12173), A1111's or ComfyUI's form."""
    from scipy.stats import beta as beta_dist  # lazy: scipy.stats is slow to import

    n = _check_steps(steps)
    if convention == "a1111":
        lo, hi = _sigma_range(model_sigmas, sigma_min, sigma_max)
        q = beta_dist.ppf(1 - np.linspace(0, 1, n), alpha, beta)
        return _append_zero(lo + torch.from_numpy(q) * (hi - lo))
    if convention != "comfyui":
        raise ValueError(f"unknown beta convention {convention!r}; expected 'a1111' or 'comfyui'")
    if sigma_min or sigma_max:
        raise ValueError("the ComfyUI beta schedule picks table entries; sigma_min/sigma_max do not apply")
    q = beta_dist.ppf(1 - np.linspace(0, 1, n, endpoint=False), alpha, beta)
    ts = np.rint(q * (len(model_sigmas) - 1)).astype(np.int64)
    keep = np.concatenate([[True], ts[1:] != ts[:-1]])  # drop consecutive duplicates
    return _append_zero(model_sigmas.double()[torch.from_numpy(ts[keep])])


def linear_quadratic(model_sigmas, steps, *, sigma_max=None, threshold_noise=0.025, linear_steps=None):
    """Linear then quadratic in σ/σ_max (genmoai Mochi, ComfyUI ``linear_quadratic``); for flow models."""
    n = _check_steps(steps)
    hi = float(sigma_max) if sigma_max else float(model_sigmas[-1])
    if n == 1:
        return _append_zero(torch.tensor([hi], dtype=torch.float64))
    lin = n // 2 if linear_steps is None else int(linear_steps)
    if not 1 <= lin < n:
        raise ValueError(f"linear_steps must be in 1 … steps−1, got {lin}")
    tau, quad = float(threshold_noise), n - lin
    diff = lin - tau * n
    a = diff / (lin * quad**2)
    b = tau / lin - 2 * diff / quad**2
    c = a * lin**2
    ramp = [i * tau / lin for i in range(lin)] + [a * i * i + b * i + c for i in range(lin, n)]
    return _append_zero((1 - torch.tensor(ramp, dtype=torch.float64)) * hi)


# ---------------------------------------------------------------- Align Your Steps tables

# A1111/Forge (3 decimals; the 32-point tables as published there).
AYS_TABLES = {
    "SD1": (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029),
    "SDXL": (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029),
}
AYS_GITS_TABLES = {
    "SD1": (14.615, 4.617, 2.507, 1.236, 0.702, 0.402, 0.240, 0.156, 0.104, 0.094, 0.029),
    "SDXL": (14.615, 4.734, 2.567, 1.529, 0.987, 0.652, 0.418, 0.268, 0.179, 0.127, 0.029),
}
AYS_32_TABLES = {
    "SD1": (14.615, 11.23951352, 8.64363081, 6.64729424, 5.57250862, 4.71648546, 3.99196065, 3.5195609,
            3.13490466, 2.79228788, 2.48773628, 2.21663865, 1.97508351, 1.7793172, 1.61475335, 1.46540953,
            1.314849, 1.16642497, 1.03475547, 0.91573744, 0.80748169, 0.71202361, 0.621739, 0.53065202,
            0.4529096, 0.37491455, 0.27461819, 0.2011529, 0.14105873, 0.06682881, 0.03166121, 0.015),
    "SDXL": (14.615, 11.1491618, 8.50522127, 6.48827151, 5.43707402, 4.60398619, 3.89854704, 3.27407457,
             2.74396527, 2.29968659, 1.95448514, 1.67108715, 1.42878152, 1.23181009, 1.06789649, 0.92579443,
             0.80290886, 0.69660121, 0.60436903, 0.52852552, 0.46773344, 0.41393379, 0.36258186, 0.31008517,
             0.26518925, 0.22326461, 0.17653877, 0.13959192, 0.10587381, 0.05519369, 0.02877334, 0.015),
}  # fmt: skip
# ComfyUI's AlignYourStepsScheduler (10 decimals, from NVIDIA's AYS how-to page).
AYS_PRECISE_TABLES = {
    "SD1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "SDXL": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "SVD": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}  # fmt: skip
_MODEL_TYPES = {"SD1": "SD1", "SD15": "SD1", "SD1.5": "SD1", "SDXL": "SDXL", "SVD": "SVD"}


def _ays_table(tables: dict[str, tuple[float, ...]], model_type: str) -> tuple[float, ...]:
    key = _MODEL_TYPES.get(str(model_type).upper().replace(" ", ""))
    if key not in tables:
        raise ValueError(f"unknown AYS model_type {model_type!r}; expected one of {', '.join(tables)}")
    return tables[key]


def loglinear_interp(table: Sequence[float], points: int) -> Tensor:
    """A decreasing table resampled to ``points`` values, linear in log σ over evenly spaced positions."""
    if points == len(table):
        return torch.tensor(table, dtype=torch.float64)
    xs = np.linspace(0, 1, len(table))
    return torch.from_numpy(np.exp(np.interp(np.linspace(0, 1, points), xs, np.log(table))))


def _ays_a1111(table: Sequence[float], steps: int) -> Tensor:
    return _append_zero(loglinear_interp(table, _check_steps(steps)))


def align_your_steps(model_sigmas, steps, *, model_type="SD1", precise=False):
    """Sabour et al. (2024), Align Your Steps: NVIDIA's optimised 10-step tables, resampled."""
    if not precise:
        return _ays_a1111(_ays_table(AYS_TABLES, model_type), steps)
    sigmas = loglinear_interp(_ays_table(AYS_PRECISE_TABLES, model_type), _check_steps(steps) + 1)
    sigmas[-1] = 0.0  # ComfyUI: steps+1 points, the last replaced by 0
    return sigmas.float()


def align_your_steps_gits(model_sigmas, steps, *, model_type="SD1"):
    """Chen et al. (2024), GITS timesteps in the AYS format (Forge 2)."""
    return _ays_a1111(_ays_table(AYS_GITS_TABLES, model_type), steps)


def align_your_steps_32(model_sigmas, steps, *, model_type="SD1"):
    """Sabour et al. (2024), the 32-point AYS tables (Forge 2)."""
    return _ays_a1111(_ays_table(AYS_32_TABLES, model_type), steps)


# ---------------------------------------------------------------- registry


def _register(fn: ScheduleFn, name: str, **info: Any) -> ScheduleInfo:
    return SCHEDULES.add(ScheduleInfo(name=name, fn=fn, **info))


_AYS_INTERP = "(A1111) n points log-linear in the table, + 0; n = len(table) → the table itself"
_register(
    uniform,
    "Automatic",
    aliases=("automatic",),
    needs_model_sigmas=True,
    description="The sampler's own default schedule (A1111's `scheduler` option); Uniform if it has none.",
    formula="sampler.default_schedule, else Uniform",
)
_register(
    uniform,
    "Uniform",
    aliases=("uniform",),
    needs_model_sigmas=True,
    description="Evenly spaced fractional timesteps over the whole table (k-diffusion's model get_sigmas); "
    "ignores σ overrides. For SD it equals Normal.",
    formula="t_i = (T−1)·(1 − i/(n−1)), σ_i = σ(t_i) (log-linear in the table), + 0",
)
_register(
    karras,
    "Karras",
    aliases=("karras",),
    default_rho=7.0,
    uses_sigma_range=True,
    description="Karras et al. 2022: uniform in σ^{1/ρ}, dense near σ_min; the usual choice for DPM++.",
    formula="σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0…n−1, ρ = 7, + 0",
)
_register(
    exponential,
    "Exponential",
    aliases=("exponential",),
    uses_sigma_range=True,
    description="Uniform in log σ (constant ratio between steps).",
    formula="σ_i = exp(ln σ_max + i/(n−1)·(ln σ_min − ln σ_max)), + 0",
)
_register(
    polyexponential,
    "Polyexponential",
    aliases=("polyexponential",),
    default_rho=1.0,
    uses_sigma_range=True,
    description="Log σ on a polynomial ramp; ρ = 1 is Exponential, larger ρ is denser near σ_min.",
    formula="r_i = (1 − i/(n−1))^ρ, σ_i = exp(r_i·(ln σ_max − ln σ_min) + ln σ_min), ρ = 1, + 0",
)
_register(
    sgm_uniform,
    "SGM Uniform",
    aliases=("sgm_uniform", "SGMUniform"),
    needs_model_sigmas=True,
    uses_sigma_range=True,
    description="Stability's SGM spacing: n of n+1 even timesteps, so the last σ stays above σ_min. "
    "Option timestep_rule: 'interp' (A1111) or 'nearest' (ComfyUI/Forge 2).",
    formula="t = linspace(t(σ_max), t(σ_min), n+1)[:−1], σ_i = σ(t_i), + 0",
)
_register(
    kl_optimal,
    "KL Optimal",
    aliases=("kl_optimal",),
    uses_sigma_range=True,
    description="AYS Theorem 3.1, uniform in atan σ. ComfyUI's form (n values ending at σ_min, then 0); "
    "A1111's uses i/n, giving n+1 values ending at σ_min and no 0.",
    formula="u_i = i/(n−1), σ_i = tan(u_i·atan σ_min + (1 − u_i)·atan σ_max), + 0",
)
_register(
    align_your_steps,
    "Align Your Steps",
    aliases=("align_your_steps",),
    description="NVIDIA's optimised 11-point tables (option model_type 'SD1' | 'SDXL'), A1111's 3-decimal "
    "values. precise=True is ComfyUI's node instead: 10-decimal tables resampled to steps+1 "
    "points with the last set to 0 (so 10 steps give the table exactly). A1111 gives "
    "[σ_min, 0] for 1 step; we start at the table's first value.",
    formula=_AYS_INTERP,
)
_register(
    simple,
    "Simple",
    aliases=("simple",),
    needs_model_sigmas=True,
    description="Every (T/n)-th table entry from the top (ComfyUI's simple).",
    formula="σ_k = table[T − 1 − int(k·T/n)], k = 0…n−1, + 0",
)
_register(
    normal,
    "Normal",
    aliases=("normal",),
    needs_model_sigmas=True,
    uses_sigma_range=True,
    description="Evenly spaced timesteps between t(σ_max) and t(σ_min); equals Uniform for SD. "
    "Option timestep_rule: 'interp' (A1111) or 'nearest' (ComfyUI/Forge 2).",
    formula="t = linspace(t(σ_max), t(σ_min), n), σ_i = σ(t_i), + 0",
)
_register(
    ddim,
    "DDIM",
    aliases=("ddim", "ddim_uniform"),
    needs_model_sigmas=True,
    description="DDIM's uniform timestep skip. Starts at table[1 + (m−1)·ss], not σ_max; gives m = "
    "⌈(T−1)/ss⌉ steps, more than n when T is not a multiple of n (30 → 31).",
    formula="ss = max(T // n, 1); σ = table[1 + j·ss] for 1 + j·ss < T, descending, + 0",
)
_register(
    beta,
    "Beta",
    aliases=("beta",),
    needs_model_sigmas=True,
    uses_sigma_range=True,
    description="Lee et al. 2024: Beta(α, β) quantiles (α = β = 0.6), dense at both ends. A1111 "
    "(convention='a1111') is linear in σ; ComfyUI (convention='comfyui') picks table "
    "timesteps, drops duplicates (≤ n steps) and stops above σ_min.",
    formula="a1111: σ_k = σ_min + F⁻¹(1 − k/(n−1); α, β)·(σ_max − σ_min), + 0 | comfyui: "
    "t_k = rint(F⁻¹(1 − k/n; α, β)·(T−1)), σ = table[t], + 0",
)
_register(
    turbo,
    "Turbo",
    aliases=("turbo",),
    needs_model_sigmas=True,
    description="SD-Turbo's timesteps (Forge 2): n evenly spaced from T−1 (4 steps: 999, 749, 499, 249).",
    formula="t_k = round(k·T/n − 1), k = n…1, σ = table[t], + 0",
)
_register(
    align_your_steps_gits,
    "Align Your Steps GITS",
    aliases=("align_your_steps_GITS",),
    description="GITS (Chen et al. 2024) timesteps as an AYS-style 11-point table (Forge 2); "
    "model_type 'SD1' | 'SDXL'.",
    formula=_AYS_INTERP,
)
_register(
    align_your_steps,
    "Align Your Steps 11",
    aliases=("align_your_steps_11",),
    description="Forge 2's name for Align Your Steps with the 11-point tables (same entry, same options).",
    formula=_AYS_INTERP,
)
_register(
    align_your_steps_32,
    "Align Your Steps 32",
    aliases=("align_your_steps_32",),
    description="The 32-point AYS tables (Forge 2), ending at 0.015; model_type 'SD1' | 'SDXL'.",
    formula=_AYS_INTERP,
)
_register(
    linear_quadratic,
    "Linear Quadratic",
    aliases=("linear_quadratic",),
    uses_sigma_range=True,
    description="ComfyUI's Mochi schedule for flow models: σ/σ_max falls linearly by τ = 0.025 over "
    "n//2 steps, then quadratically to 0. Honours sigma_max only.",
    formula="L = n//2, r_i = i·τ/L (i < L), a·i² + b·i + c (L ≤ i < n), 1; σ_i = (1 − r_i)·σ_max",
)


# ---------------------------------------------------------------- building a run's schedule


def resolve_schedule(schedule: str, sampler: SamplerInfo | None = None) -> ScheduleInfo:
    """The entry a run uses: "Automatic" becomes the sampler's default schedule, else Uniform."""
    info = SCHEDULES[schedule]
    if info.name == "Automatic":
        default = sampler.default_schedule if sampler is not None else None
        info = SCHEDULES[default or "Uniform"]
    return info


def _accepted_options(fn: ScheduleFn) -> set[str]:
    return set(inspect.signature(fn).parameters)


def build_sigmas(
    model_sigmas: Tensor,
    steps: int,
    schedule: str = "Automatic",
    *,
    sampler: SamplerInfo | None = None,
    denoise: float = 1.0,
    discard_penultimate_sigma: bool | None = None,
    **options: Any,
) -> Tensor:
    """The σ list for a run, as A1111's ``KDiffusionSampler.get_sigmas`` and ComfyUI's ``set_steps``.

    * "Automatic" → ``sampler.default_schedule`` (Uniform if none).
    * ``discard_penultimate_sigma`` (default: the sampler's flag): build steps+1 σ, drop the
      second-to-last.
    * ``denoise`` < 1 (ComfyUI): build int(steps/denoise) steps, keep the last steps+1 σ;
      ``denoise`` ≤ 0 gives an empty tensor.
    * ``sigma_min``/``sigma_max``/``rho`` are dropped for schedules that have no such option (as A1111
      ignores them there); other options go to the schedule function unchanged.
    """
    info = resolve_schedule(schedule, sampler)
    steps = _check_steps(steps)
    accepted = _accepted_options(info.fn)
    options = {k: v for k, v in options.items() if k not in COMMON_OPTIONS or k in accepted}
    if discard_penultimate_sigma is None:
        discard_penultimate_sigma = sampler is not None and sampler.discard_penultimate_sigma

    def compute(n: int) -> Tensor:
        if not discard_penultimate_sigma:
            return info(model_sigmas, n, **options)
        sigmas = info(model_sigmas, n + 1, **options)
        return torch.cat([sigmas[:-2], sigmas[-1:]])

    if not denoise <= 1.0:
        raise ValueError(f"denoise must be at most 1, got {denoise}")
    if denoise > 0.9999:
        return compute(steps)
    if denoise <= 0:
        return torch.zeros(0, dtype=torch.float32)
    return compute(int(steps / denoise))[-(steps + 1) :]
