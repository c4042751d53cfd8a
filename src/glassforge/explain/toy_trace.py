"""The toy world explained: one ``sample()`` run with the exact denoiser, every event kept, steps worked out.

The "model" is the toy world's Gaussian mixture (:mod:`glassforge.toy`): a prompt's words pick clusters
in the plane and D(x, σ) = E[x0 | x] is exact. Each particle is one "image"; ``sample()`` draws the seeded
noise for all particles at once (one image of shape [particles, 2]) and runs the real sampler with the
toy guider (classifier-free guidance between the prompt's and the negative prompt's denoisers). A
listener keeps every :class:`Guidance` and :class:`SamplerStep` event; :func:`worked_step` fills the
sampler's update in with one followed particle's numbers (the formulas of :mod:`.walk`) and recomputes
the update for every particle. :func:`write_toy_trace` writes it all to ``trace.json``
(format ``glassforge-toy-trace``, documented in ``docs/explain.md``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..sampling.events import Event, Guidance, SamplerStep
from ..toy.world import ToyConditioning, ToyGuider, ToyWorld
from .walk import WORKED, Update, _Ctx, fmt

TOY_TRACE_FORMAT = "glassforge-toy-trace"
TOY_TRACE_VERSION = 1


@dataclass(frozen=True)
class Evaluation:
    """One call of the guided toy denoiser: D_c, D_u (None at CFG 1) and D̃ for every particle ([N, 2])."""

    sigma: float
    cond: Tensor
    uncond: Tensor | None
    guided: Tensor
    scale: float


@dataclass(frozen=True)
class ToyStep:
    """One sampler step, for every particle ([N, 2] tensors)."""

    i: int
    sampler: str  # function name, e.g. "dpmpp_2m"
    sigma: float
    sigma_next: float
    formula: str
    terms: dict[str, float]
    x: Tensor
    x_next: Tensor
    denoised: Tensor  # the estimate the update used
    noise: Tensor | None  # unit noise injected by the step
    evaluations: tuple[Evaluation, ...]


@dataclass
class ToyTrace:
    world: ToyWorld
    cond: ToyConditioning
    uncond: ToyConditioning
    prompt: str
    negative: str
    sampler: str  # display name
    schedule: str  # as asked
    schedule_used: str  # the schedule that made the σ's
    schedule_formula: str
    cfg: float
    seed: int
    sigmas: list[float]
    noise: Tensor  # [N, 2] unit noise ε from the seed
    steps: list[ToyStep]
    final: Tensor  # [N, 2]
    followed: int  # the particle whose arithmetic is shown

    @property
    def particles(self) -> int:
        return int(self.noise.shape[0])

    @property
    def xs(self) -> Tensor:
        """[S + 1, N, 2]: positions before step 0 … after the last step."""
        return (
            torch.stack([self.steps[0].x, *(s.x_next for s in self.steps)])
            if self.steps
            else self.final[None]
        )

    def end_fractions(self) -> dict[str, float]:
        return self.world.word_fractions(self.final)


class _Flat:
    """The toy guider seen by the sampler: latents [1, N, 2] in, the guider works on [N, 2]."""

    def __init__(self, guider: ToyGuider):
        self.guider = guider

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.guider(x.reshape(-1, 2), sigma).reshape(x.shape)

    def guided_and_uncond(self, x: Tensor, sigma: Tensor, scale_factor: float = 1.0) -> tuple[Tensor, Tensor]:
        guided, uncond = self.guider.guided_and_uncond(x.reshape(-1, 2), sigma, scale_factor=scale_factor)
        return guided.reshape(x.shape), uncond.reshape(x.shape)


def _flat(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().reshape(-1, 2).clone()


def run_toy(
    world: ToyWorld,
    prompt: str,
    *,
    negative: str = "",
    sampler: str = "DPM++ 2M",
    schedule: str = "Automatic",
    steps: int = 20,
    cfg: float = 7.0,
    seed: int = -1,
    particles: int = 200,
    follow: int | None = None,
) -> ToyTrace:
    """Sample ``particles`` points for ``prompt`` with ``sample()``; raises UnknownWordError /
    UnknownNameError / ValueError on bad input."""
    from ..sampling.noise_schedule import DiscreteSchedule
    from ..sampling.run import sample
    from ..sampling.schedules import SCHEDULES, resolve_schedule

    if particles < 1:
        raise ValueError(f"--particles must be at least 1, got {particles}")
    cond, uncond = world.condition(prompt), world.condition(negative)
    evaluations: list[Evaluation] = []
    recorded: list[ToyStep] = []

    def listen(event: Event) -> None:
        if isinstance(event, Guidance):
            sigma = float(torch.as_tensor(event.sigma).reshape(-1)[0])
            evaluations.append(Evaluation(sigma, _flat(event.cond), _flat(event.uncond), _flat(event.guided),
                                          float(event.scale)))  # fmt: skip
        elif isinstance(event, SamplerStep):
            recorded.append(
                ToyStep(
                    event.i,
                    event.sampler,
                    float(event.sigma),
                    float(event.sigma_next),
                    event.formula,
                    {k: float(v) for k, v in event.terms.items()},
                    _flat(event.x),
                    _flat(event.x_next),
                    _flat(event.denoised),
                    _flat(event.noise),
                    tuple(evaluations),
                )
            )
            evaluations.clear()

    guider = world.guided(cond, uncond, cfg, on_event=listen)
    result = sample(_Flat(guider), DiscreteSchedule.stable_diffusion().sigmas, (particles, 2), sampler=sampler,
                    schedule=schedule, steps=steps, seed=seed, dtype=torch.float64, on_event=listen)  # fmt: skip
    if not recorded:
        raise ValueError(f"the sampler {result.sampler.name} reported no steps; nothing to explain")
    used = resolve_schedule(result.schedule, result.sampler)
    used_name = used.name if SCHEDULES[result.schedule].name != "Automatic" else f"Automatic → {used.name}"
    final = result.latents.reshape(-1, 2).clone()
    if follow is None:
        follow = _pick_followed(world, cond, final)
    elif not 0 <= follow < particles:
        raise ValueError(f"the followed particle must be in 0 … {particles - 1}, got {follow}")
    return ToyTrace(world, cond, uncond, prompt, negative, result.sampler.name, schedule, used_name,
                    used.formula, float(cfg), result.seeds[0], [float(s) for s in result.sigmas],
                    result.initial_noise.reshape(-1, 2).double(), recorded, final, follow)  # fmt: skip


def _pick_followed(world: ToyWorld, cond: ToyConditioning, final: Tensor) -> int:
    """The first particle that ended nearest a cluster of the prompt's words (0 if none did)."""
    listed = [world.words.index(w) for w in cond.words.weights]
    if not listed:
        return 0
    nearest = world.nearest_word(final)
    for p in range(final.shape[0]):
        if int(nearest[p]) in listed:
            return p
    return 0


# ---------------------------------------------------------------------- one step worked out


def vec(t: Tensor) -> str:
    """A particle's 2-vector as the walk-through prints it: [a, b]."""
    return "[" + ", ".join(fmt(float(v)) for v in t.reshape(-1)) + "]"


@dataclass
class WorkedStep:
    step: ToyStep
    filled: list[str]  # the sampler's formula with this step's σ's and coefficients
    lines: list[str]  # the followed particle's arithmetic, D_c/D_u/CFG → update → x_{i+1}
    check: float | None  # max over all particles |recomputed − recorded x_{i+1}| (None: not worked out)
    numbers: dict[str, Any]  # the followed particle's inputs and result, full precision


def worked_step(trace: ToyTrace, i: int) -> WorkedStep:
    """Step ``i`` worked out for the followed particle (formulas from :mod:`.walk`)."""
    step = trace.steps[i]
    p = trace.followed
    guided = [e.guided for e in step.evaluations]
    prev_guided = prev_h = None
    if i > 0:
        prev = trace.steps[i - 1]
        prev_guided = prev.evaluations[0].guided if prev.evaluations else None
        if prev.sigma_next > 0:
            prev_h = math.log(prev.sigma / prev.sigma_next)
    ctx = _Ctx(step.x, guided, [step.x] * len(guided), step.sigma, step.sigma_next, step.terms, step.noise,
               prev_guided, prev_h)  # fmt: skip
    worker = WORKED.get(step.sampler)
    if worker is not None and guided:
        update = worker(ctx)
    else:
        terms = ", ".join(f"{k} = {fmt(v)}" for k, v in step.terms.items())
        update = Update([step.formula, *([f"terms: {terms}"] if terms else [])],
                        {"x": step.x, "D": step.denoised, "xn": step.x_next},
                        ["x_i = {x_},  D̃_i = {D_}  →  x_{{i+1}} = {xn}"])  # fmt: skip
    check = None if update.x_next is None else float((update.x_next - step.x_next).abs().max())
    strings = {k: vec(v[p]) for k, v in update.values.items()}
    strings |= {k + "_": vec(v[p]) for k, v in update.values.items()}
    lines = _cfg_lines(step, p) + [t.format(**strings) for t in update.templates]
    if update.x_next is not None:
        lines.append(f"✓ x_{{i+1}} = {vec(step.x_next[p])}")
    numbers = {
        "particle": p,
        "sigma": step.sigma,
        "sigma_next": step.sigma_next,
        "terms": dict(step.terms),
        "x": step.x[p].tolist(),
        "denoised": [e.guided[p].tolist() for e in step.evaluations],
        "cond": [e.cond[p].tolist() for e in step.evaluations],
        "uncond": [None if e.uncond is None else e.uncond[p].tolist() for e in step.evaluations],
        "scale": [e.scale for e in step.evaluations],
        "previous_denoised": None if prev_guided is None else prev_guided[p].tolist(),
        "noise": None if step.noise is None else step.noise[p].tolist(),
        "x_next": step.x_next[p].tolist(),
    }
    return WorkedStep(step, update.filled, lines, check, numbers)


def _cfg_lines(step: ToyStep, p: int) -> list[str]:
    out = []
    many = len(step.evaluations) > 1
    for j, e in enumerate(step.evaluations):
        tag = f"[{j + 1}] " if many else ""
        out.append(f"{tag}D_c = D*(x; σ = {fmt(e.sigma)} | prompt) = {vec(e.cond[p])}")
        if e.uncond is None:
            out.append(f"{tag}D̃ = D_c = {vec(e.guided[p])}   (w = 1)")
        else:
            out.append(f"{tag}D_u = D*(x; σ | negative) = {vec(e.uncond[p])}")
            out.append(f"{tag}D̃ = D_u + w·(D_c − D_u) = {vec(e.uncond[p])} + {fmt(e.scale)}×({vec(e.cond[p])}"
                       f" − {vec(e.uncond[p])}) = {vec(e.guided[p])}")  # fmt: skip
    return out


def denoiser_lines(trace: ToyTrace, i: int, top: int = 3) -> list[str]:
    """The exact denoiser at the followed particle, step ``i``: D*(x; σ) = Σ_k w_k·(μ_k + s_k²/(s_k² + σ²)·(x − μ_k)).

    The ``top`` clusters with the largest responsibility w_k are written out; the sum runs over all.
    """
    step = trace.steps[i]
    x = step.x[trace.followed][None]
    keep = torch.nonzero(trace.cond.weights > 0).reshape(-1).tolist()
    mixture = trace.world.mixture(trace.cond)
    w = mixture.log_responsibilities(x, step.sigma).exp()[0]
    shrink = mixture.stds**2 / (mixture.stds**2 + step.sigma**2)
    targets = mixture.means + shrink[:, None] * (x - mixture.means)
    order = torch.argsort(w, descending=True).tolist()
    lines = [f"x = {vec(x)},  σ = {fmt(step.sigma)}"]
    for k in order[:top]:
        c = trace.world.clusters[keep[k]]
        lines.append(f"  {c.label:<16} π = {fmt(float(mixture.weights[k]))}  w = {fmt(float(w[k]))}  "
                     f"s²/(s² + σ²) = {fmt(float(shrink[k]))}  μ + … = {vec(targets[k])}")  # fmt: skip
    rest = len(order) - top
    if rest > 0:
        lines.append(f"  … {rest} more, w = {fmt(float(w[order[top:]].sum()))} together")
    lines.append(f"D*(x; σ) = Σ_k w_k·(…) = {vec((w[:, None] * targets).sum(0))}")
    return lines


# ---------------------------------------------------------------------- trace.json


def _num(v: float) -> float | str:
    v = float(v)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _pts(t: Tensor | None) -> list | None:
    return None if t is None else [[float(a), float(b)] for a, b in t.double().tolist()]


def _conditioning(c: ToyConditioning) -> dict[str, Any]:
    return {"text": c.prompt, "words": dict(c.words.weights), "ignored": list(c.words.ignored),
            "mixture": [float(v) for v in c.weights]}  # fmt: skip


def toy_trace_json(trace: ToyTrace) -> dict[str, Any]:
    from .. import __version__

    world = trace.world
    prior = world.prior_weights()
    return {
        "format": TOY_TRACE_FORMAT,
        "version": TOY_TRACE_VERSION,
        "generator": f"glassforge {__version__}",
        "world": {
            "leak": world.leak,
            "words": list(world.words),
            "clusters": [
                {
                    "word": c.word,
                    "label": c.label,
                    "mean": list(c.mean),
                    "std": c.std,
                    "share": c.share,
                    "prior": float(prior[k]),
                }
                for k, c in enumerate(world.clusters)
            ],
        },
        "params": {
            "prompt": trace.prompt,
            "negative_prompt": trace.negative,
            "sampler": trace.sampler,
            "schedule": trace.schedule,
            "schedule_used": trace.schedule_used,
            "steps": len(trace.steps),
            "cfg_scale": trace.cfg,
            "seed": trace.seed,
            "particles": trace.particles,
            "followed": trace.followed,
        },
        "prompt": {"cond": _conditioning(trace.cond), "uncond": _conditioning(trace.uncond)},
        "sigmas": [_num(s) for s in trace.sigmas],
        "noise": _pts(trace.noise),
        "xs": [_pts(x) for x in trace.xs],
        "steps": [
            {
                "i": s.i,
                "sampler": s.sampler,
                "sigma": _num(s.sigma),
                "sigma_next": _num(s.sigma_next),
                "formula": s.formula,
                "terms": {k: _num(v) for k, v in s.terms.items()},
                "denoised": _pts(s.denoised),
                "noise": _pts(s.noise),
                "evaluations": [
                    {
                        "sigma": _num(e.sigma),
                        "scale": e.scale,
                        "cond": _pts(e.cond),
                        "uncond": _pts(e.uncond),
                        "guided": _pts(e.guided),
                    }
                    for e in s.evaluations
                ],
            }
            for s in trace.steps
        ],
        "end_fractions": trace.end_fractions(),
    }


def write_toy_trace(trace: ToyTrace, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trace.json"
    path.write_text(json.dumps(toy_trace_json(trace), ensure_ascii=False, separators=(",", ":")), "utf-8")
    return path
