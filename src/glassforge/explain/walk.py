"""Each sampler step of a trace, worked out in numbers.

For a step i of image ``b`` this gives: the update formula filled in with the step's σ_i, σ_{i+1} and
coefficients; for a few "followed" latent elements, the whole arithmetic from the network's raw output
(ε or v) through the denoised estimates (cond, uncond), classifier-free guidance and the sampler's
update to x_{i+1}; the update recomputed from the recorded inputs and its largest difference from the
recorded x_{i+1}; and statistics. Everything is computed from the trace alone.

Samplers worked out in full: Euler, Euler a, Heun, DPM++ 2M. Others show their formula, their
recorded terms and the element values before and after the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .trace import Trace

Element = tuple[int, ...]  # (channel, y, x) in one image's latent


def fmt(v: float) -> str:
    """A number as the walk-through prints it: 6 significant digits."""
    v = float(v)
    if v == 0:
        return "0"
    return f"{v:.6g}"


def par(v: float) -> str:
    """Like :func:`fmt`, in parentheses when negative (for use after an operator)."""
    s = fmt(v)
    return f"({s})" if s.startswith("-") else s


def followed_elements(shape: tuple[int, ...], count: int = 3) -> list[Element]:
    """``count`` fixed latent positions (channel, y, x) spread over channels and the image."""
    c, h, w = shape[-3:]
    picks = [(0, h // 2, w // 2), (1 % c, h // 4, (3 * w) // 4), ((c - 1), (3 * h) // 4, w // 4)]
    return picks[:count]


@dataclass
class Update:
    """A sampler update worked out: filled-in formula lines, per-element templates, the recomputed x_{i+1}."""

    filled: list[str]
    values: dict[str, Tensor] = field(default_factory=dict)  # named intermediate tensors (one image)
    templates: list[str] = field(default_factory=list)  # str.format over those names at an element
    x_next: Tensor | None = None


@dataclass
class StepWalk:
    i: int
    total: int
    sampler: str
    sigma: float
    sigma_next: float
    timestep: float
    formula: str
    terms: dict[str, float]
    filled: list[str]
    elements: list[tuple[Element, list[str]]]
    check: float | None  # max |recomputed − recorded x_{i+1}| (None when not worked out)
    stats: dict[str, float]


@dataclass
class _Ctx:
    x: Tensor  # image b's x_i
    guided: list[Tensor]  # D̃ of each model evaluation of the step (image b)
    inputs: list[Tensor]  # the latent each evaluation was made at (image b)
    sigma: float
    sigma_next: float
    terms: dict[str, float]
    noise: Tensor | None
    prev_guided: Tensor | None  # D̃ of the previous step's first evaluation
    prev_h: float | None


def _euler(c: _Ctx) -> Update:
    s, sn = c.terms.get("sigma_hat", c.sigma), c.sigma_next
    dt = sn - s
    d = (c.x - c.guided[0]) / s
    x_next = c.x + d * dt
    a = 1 + dt / s
    return Update(
        [
            "x_{i+1} = x_i + (σ_{i+1} − σ_i)·(x_i − D̃_i)/σ_i",
            f"        = x_i + ({fmt(sn)} − {fmt(s)})·(x_i − D̃_i)/{fmt(s)}",
            f"        = {fmt(a)}·x_i + {par(1 - a)}·D̃_i",
        ],
        {"x": c.x, "D": c.guided[0], "d": d, "xn": x_next},
        [
            f"d = (x_i − D̃_i)/σ_i = ({{x_}} − {{D}})/{fmt(s)} = {{d_}}",
            f"x_{{{{i+1}}}} = x_i + (σ_{{{{i+1}}}} − σ_i)·d = {{x_}} + {par(dt)}×{{d}} = {{xn}}",
        ],
        x_next,
    )


def _euler_ancestral(c: _Ctx) -> Update:
    s, sn = c.sigma, c.sigma_next
    sd, su = c.terms.get("sigma_down", sn), c.terms.get("sigma_up", 0.0)
    d = (c.x - c.guided[0]) / s
    x_next = c.x + d * (sd - s)
    values = {"x": c.x, "D": c.guided[0], "d": d}
    noise_part = ""
    if c.noise is not None and su > 0:
        x_next = x_next + c.noise * su
        values["z"] = c.noise
        noise_part = f" + {fmt(su)}×{{z}}"
    values["xn"] = x_next
    return Update(
        [
            "σ_up = min(σ_{i+1}, √(σ_{i+1}²·(σ_i² − σ_{i+1}²)/σ_i²)),  σ_down = √(σ_{i+1}² − σ_up²)",
            f"     σ_up = {fmt(su)},  σ_down = {fmt(sd)}",
            "x_{i+1} = x_i + (σ_down − σ_i)·(x_i − D̃_i)/σ_i + σ_up·z",
            f"        = x_i + ({fmt(sd)} − {fmt(s)})·(x_i − D̃_i)/{fmt(s)} + {fmt(su)}·z",
        ],
        values,
        [
            f"d = (x_i − D̃_i)/σ_i = ({{x_}} − {{D}})/{fmt(s)} = {{d_}}",
            f"x_{{{{i+1}}}} = x_i + (σ_down − σ_i)·d + σ_up·z = {{x_}} + {par(sd - s)}×{{d}}{noise_part} = {{xn}}",
        ],
        x_next,
    )


def _heun(c: _Ctx) -> Update:
    s, sn = c.terms.get("sigma_hat", c.sigma), c.sigma_next
    dt = sn - s
    d = (c.x - c.guided[0]) / s
    x_euler = c.x + d * dt
    if sn == 0 or len(c.guided) < 2:
        update = _euler(c)
        update.filled.insert(0, "σ_{i+1} = 0  ⇒  Euler")
        return update
    d2 = (x_euler - c.guided[1]) / sn
    x_next = c.x + (d + d2) * (dt / 2)
    return Update(
        [
            "d̂ = (x_i − D̃(x_i, σ_i))/σ_i;   x′ = x_i + (σ_{i+1} − σ_i)·d̂",
            f"     x′ = x_i + {par(dt)}·d̂   →   D̃(x′, σ_{{i+1}} = {fmt(sn)})",
            "d′ = (x′ − D̃(x′, σ_{i+1}))/σ_{i+1};   x_{i+1} = x_i + (σ_{i+1} − σ_i)·(d̂ + d′)/2",
            f"     x_{{i+1}} = x_i + {par(dt / 2)}·(d̂ + d′)",
        ],
        {"x": c.x, "D": c.guided[0], "d": d, "xe": x_euler, "D2": c.guided[1], "d2": d2, "xn": x_next},
        [
            f"d̂ = (x_i − D̃_1)/σ_i = ({{x_}} − {{D}})/{fmt(s)} = {{d_}}",
            f"x′ = x_i + (σ_{{{{i+1}}}} − σ_i)·d̂ = {{x_}} + {par(dt)}×{{d}} = {{xe_}}",
            f"d′ = (x′ − D̃_2)/σ_{{{{i+1}}}} = ({{xe_}} − {{D2}})/{fmt(sn)} = {{d2_}}",
            f"x_{{{{i+1}}}} = x_i + (σ_{{{{i+1}}}} − σ_i)·(d̂ + d′)/2 = {{x_}} + {par(dt / 2)}×({{d_}} + {{d2}}) = {{xn}}",
        ],
        x_next,
    )


def _dpmpp_2m(c: _Ctx) -> Update:
    s, sn, D = c.sigma, c.sigma_next, c.guided[0]
    if sn == 0:
        return Update(
            ["σ_{i+1} = 0  ⇒  x_{i+1} = D̃_i"],
            {"D": D, "xn": D},
            ["x_{{i+1}} = D̃_i = {D_}"],
            D,
        )
    h = math.log(s / sn)
    lines = ["h = ln(σ_i/σ_{i+1})" + f" = ln({fmt(s)}/{fmt(sn)}) = {fmt(h)}"]
    values = {"x": c.x, "D": D}
    if c.prev_guided is None or c.prev_h is None:
        Dp = D
        lines.append("i = 0  ⇒  D′ = D̃_i")
        d_template = "D′ = D̃_i = {D_}"
    else:
        r = c.prev_h / h
        a, b = 1 + 1 / (2 * r), 1 / (2 * r)
        Dp = a * D - b * c.prev_guided
        values["Dprev"] = c.prev_guided
        lines.append(f"r = h_{{i−1}}/h_i = {fmt(r)};   D′ = (1 + 1/(2r))·D̃_i − (1/(2r))·D̃_{{i−1}}")
        lines.append(f"     D′ = {fmt(a)}·D̃_i − {par(b)}·D̃_{{i−1}}")
        d_template = f"D′ = {fmt(a)}×{{D}} − {par(b)}×{{Dprev}} = {{Dp_}}"
    ratio, coef = sn / s, -math.expm1(-h)
    x_next = ratio * c.x + coef * Dp
    values |= {"Dp": Dp, "xn": x_next}
    lines += [
        "x_{i+1} = (σ_{i+1}/σ_i)·x_i − (e^{−h} − 1)·D′",
        f"        = {fmt(ratio)}·x_i + {fmt(coef)}·D′",
    ]
    return Update(
        lines,
        values,
        [d_template, f"x_{{{{i+1}}}} = {fmt(ratio)}×{{x}} + {fmt(coef)}×{{Dp}} = {{xn}}"],
        x_next,
    )


WORKED: dict[str, Callable[[_Ctx], Update]] = {
    "euler": _euler,
    "euler_ancestral": _euler_ancestral,
    "heun": _heun,
    "dpmpp_2m": _dpmpp_2m,
}


def _rows(call: dict, role: str, b: int) -> int | None:
    """Index in a model call's batch of image ``b``'s row for ``role`` ("cond"/"uncond"/"model")."""
    rows = [k for k, r in enumerate(call["rows"]) if r == role]
    return rows[b] if b < len(rows) else None


def model_lines(trace: Trace, step: dict, e: Element, b: int = 0, n: int = 0) -> list[str]:
    """The network output → denoised estimates → CFG, at element ``e`` of image ``b``, per evaluation."""
    lines = []
    calls = trace.calls(step, n)
    for j, g in enumerate(trace.guidance(step, n)):
        mine = [calls_k for calls_k in calls if calls_k["index"] in g["calls"]]
        found = {}
        for role in ("cond", "uncond"):
            for call in mine:
                row = _rows(call, role, b)
                if row is not None:
                    found[role] = (call, row)
                    break
        tag = f"[{j + 1}] " if len(trace.guidance(step, n)) > 1 else ""
        for role, sub in (("cond", "c"), ("uncond", "u")):
            if role not in found:
                continue
            call, row = found[role]
            x = float(trace.t(call["tensors"]["x"])[row][e])
            raw = float(trace.t(call["tensors"]["raw"])[row][e])
            den = float(trace.t(call["tensors"]["denoised"])[row][e])
            s = float(call["sigma"][row])
            if call["prediction"] == "eps":
                lines.append(
                    f"{tag}ε_{sub} = {fmt(raw)};  D_{sub} = x − σ·ε_{sub} = {fmt(x)} − {fmt(s)}×{par(raw)} = {fmt(den)}"
                )
            else:
                c_skip, c_out = 1 / (s * s + 1), -s / math.sqrt(s * s + 1)
                lines.append(
                    f"{tag}v_{sub} = {fmt(raw)};  D_{sub} = c_skip·x + c_out·v = {fmt(c_skip)}×{par(x)} + "
                    f"{par(c_out)}×{par(raw)} = {fmt(den)}"
                )
        guided = float(trace.t(g["tensors"]["guided"])[b][e])
        if "uncond" in found:
            dc = float(trace.t(g["tensors"]["cond"])[b][e])
            du = float(trace.t(g["tensors"]["uncond"])[b][e])
            w = float(g["scale"])
            lines.append(
                f"{tag}D̃ = D_u + w·(D_c − D_u) = {fmt(du)} + {fmt(w)}×({fmt(dc)} − {par(du)}) = {fmt(guided)}"
            )
            plain = du + w * (dc - du)
            if abs(plain - guided) > 1e-4 * max(1.0, abs(guided)):
                lines.append(f"{tag}   ≠ recorded D̃ = {fmt(guided)}  (CFG rescale / CFG hook)")
        else:
            lines.append(f"{tag}D̃ = D_c = {fmt(guided)}   (w = 1)")
    return lines


def _image(t: Tensor | None, b: int) -> Tensor | None:
    return None if t is None else t[b]


def step_walk(
    trace: Trace, i: int, *, b: int = 0, n: int = 0, elements: list[Element] | None = None
) -> StepWalk:
    """Step ``i`` of image ``b`` in batch ``n``, worked out."""
    steps = trace.steps(n)
    step = steps[i]
    x = trace.step_tensor(step, "x")[b]
    guidance = trace.guidance(step, n)
    guided = [trace.t(g["tensors"]["guided"])[b] for g in guidance]
    calls = trace.calls(step, n)
    inputs = [trace.t(c["tensors"]["x"])[_rows(c, c["rows"][0], b) or 0] for c in calls]
    prev_guided = prev_h = None
    if i > 0:
        prev = steps[i - 1]
        prev_g = trace.guidance(prev, n)
        prev_guided = trace.t(prev_g[0]["tensors"]["guided"])[b] if prev_g else None
        if float(prev["sigma_next"]) > 0:
            prev_h = math.log(float(prev["sigma"]) / float(prev["sigma_next"]))
    terms = {k: float(v) for k, v in step["terms"].items()}
    ctx = _Ctx(x, guided, inputs, float(step["sigma"]), float(step["sigma_next"]), terms,
               _image(trace.step_tensor(step, "noise"), b), prev_guided, prev_h)  # fmt: skip
    recorded = trace.step_tensor(step, "x_next")[b]
    worker = WORKED.get(step["sampler"])
    if worker is not None and guided:
        update = worker(ctx)
    else:
        update = Update(
            [step["formula"], "terms: " + ", ".join(f"{k} = {fmt(v)}" for k, v in terms.items())],
            {"x": x, "D": guided[0] if guided else trace.step_tensor(step, "denoised")[b], "xn": recorded},
            ["x_i = {x_},  D̃_i = {D_}  →  x_{{i+1}} = {xn}"],
        )
    check = None if update.x_next is None else float((update.x_next - recorded).abs().max())
    elements = elements if elements is not None else followed_elements(tuple(x.shape))
    worked = []
    for e in elements:
        strings = {k: par(float(v[e])) for k, v in update.values.items()}
        strings |= {k + "_": fmt(float(v[e])) for k, v in update.values.items()}
        strings["xn"] = strings["xn_"]
        lines = model_lines(trace, step, e, b, n) + [t.format(**strings) for t in update.templates]
        if update.x_next is not None:
            lines.append(f"✓ trace: x_{{i+1}} = {fmt(float(recorded[e]))}")
        worked.append((e, lines))
    timestep = float(calls[0]["timestep"][0]) if calls else float("nan")
    return StepWalk(i, int(step["total"]), step["sampler"], ctx.sigma, ctx.sigma_next, timestep,
                    step["formula"], terms, update.filled, worked, check, _stats(trace, step, b, n, x, guided))  # fmt: skip


def _rms(t: Tensor) -> float:
    return float(t.double().pow(2).mean().sqrt())


def _stats(trace: Trace, step: dict, b: int, n: int, x: Tensor, guided: list[Tensor]) -> dict[str, float]:
    sigma = float(step["sigma"])
    stats = {
        "sigma": sigma,
        "x_rms": _rms(x),
        "x_std_over_sqrt(1+sigma^2)": float(x.double().std()) / math.sqrt(1 + sigma * sigma),
        "snr_db": -20 * math.log10(sigma) if sigma > 0 else float("inf"),
        "signal_share": 1 / math.sqrt(1 + sigma * sigma),
    }
    if guided:
        stats["x0_rms"] = _rms(guided[0])
        eps = (x - guided[0]) / sigma if sigma > 0 else torch.zeros_like(x)
        stats["eps_rms"] = _rms(eps)
    g = trace.guidance(step, n)
    if g and g[0]["tensors"]["uncond"] is not None:
        cond, uncond = trace.t(g[0]["tensors"]["cond"])[b], trace.t(g[0]["tensors"]["uncond"])[b]
        stats["cond_minus_uncond_rms"] = _rms(cond - uncond)
    return stats
