"""``glassforge toy``: sample particles in the 2-D pseudo-space and draw their way from noise to words.

Each particle is one "image": it starts as seeded noise x_T = σ_max·z, the chosen sampler walks it
down the σ schedule with the toy world's exact denoiser (and CFG), and it ends in the cluster of a
word. The run is recorded through the sampler's :class:`SamplerStep` events, printed as a table
and drawn by :mod:`glassforge.toy.plot`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..sampling.events import Event, Guidance, SamplerStep
from ..sampling.noise_schedule import DiscreteSchedule
from ..sampling.registry import UnknownNameError
from .world import ToyConditioning, ToyWorld, UnknownWordError


@dataclass
class ToyRun:
    """Everything a toy sampling run produced, step by step."""

    world: ToyWorld
    cond: ToyConditioning
    negative: ToyConditioning | None  # None when CFG = 1 ignores the negative prompt
    sampler: str  # display name
    schedule: str  # as asked ("Automatic", "Karras", ...)
    schedule_used: str  # the schedule that produced the sigmas
    cfg: float
    seed: int
    sigmas: Tensor  # [S + 1] the schedule handed to the sampler
    xs: Tensor  # [S + 1, N, 2] particle positions before step 0 … after the last step
    denoised: Tensor  # [S, N, 2] the denoised estimate x̂0 each step used
    step_sigmas: Tensor  # [S, 2] (σ_i, σ_{i+1}) of each recorded step
    calls: dict[str, int] = field(default_factory=dict)  # denoiser evaluations: cond / uncond

    @property
    def steps(self) -> int:
        return self.denoised.shape[0]

    @property
    def particles(self) -> int:
        return self.xs.shape[1]

    def end_fractions(self) -> dict[str, float]:
        return self.world.word_fractions(self.xs[-1])


def _sigmas(info, steps: int, schedule: str) -> tuple[Tensor, str]:
    """The sampler's σ schedule on the SD table, and the name of the schedule used."""
    from ..sampling.schedules import SCHEDULES, build_sigmas, resolve_schedule

    sigmas = build_sigmas(DiscreteSchedule.stable_diffusion().sigmas, steps, schedule, sampler=info)
    used = resolve_schedule(schedule, info).name
    if SCHEDULES[schedule].name == "Automatic":
        used = f"Automatic → {used}"
    return sigmas, used


def simulate(
    world: ToyWorld,
    prompt: str,
    *,
    sampler: str = "DPM++ 2M",
    steps: int = 10,
    schedule: str = "Automatic",
    cfg: float = 1.0,
    negative: str = "",
    seed: int = 0,
    particles: int = 200,
) -> ToyRun:
    """Sample ``particles`` points for ``prompt``; raises UnknownWordError / UnknownNameError."""
    from ..sampling.samplers import SAMPLERS

    if steps < 1 or particles < 1:
        raise ValueError("steps and particles must be at least 1")
    cond = world.condition(prompt)
    neg = world.condition(negative)
    info = SAMPLERS[sampler]
    sigmas, used = _sigmas(info, steps, schedule)
    sigmas = sigmas.to(torch.float64)

    calls = {"cond": 0, "uncond": 0}
    records: list[SamplerStep] = []

    def listen(event: Event) -> None:
        if isinstance(event, SamplerStep):
            records.append(event)
        elif isinstance(event, Guidance):
            calls["cond"] += 1
            calls["uncond"] += event.uncond is not None

    guider = world.guided(cond, neg, cfg, on_event=listen)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(particles, 2, generator=generator, dtype=torch.float64) * sigmas[0]
    x_end = info(guider, x, sigmas, generator=generator, on_event=listen)

    if records:
        xs = torch.stack([records[0].x, *(r.x_next for r in records)]).clone()
        denoised = torch.stack([r.denoised for r in records]).clone()
        step_sigmas = torch.tensor([[r.sigma, r.sigma_next] for r in records], dtype=torch.float64)
    else:  # a sampler that emits no steps: keep the end points at least
        xs, denoised = torch.stack([x, x_end]), x_end[None].clone()
        step_sigmas = torch.tensor([[float(sigmas[0]), float(sigmas[-1])]], dtype=torch.float64)
    return ToyRun(
        world=world,
        cond=cond,
        negative=neg if cfg != 1.0 else None,
        sampler=info.name,
        schedule=schedule,
        schedule_used=used,
        cfg=cfg,
        seed=seed,
        sigmas=sigmas,
        xs=xs,
        denoised=denoised,
        step_sigmas=step_sigmas,
        calls=calls,
    )


def describe_prompt(cond: ToyConditioning) -> str:
    words = cond.words
    if not words.weights:
        return "(empty → unconditional: every word)"
    return ", ".join(w if abs(v - 1) < 1e-9 else f"{w}×{v:.3g}" for w, v in words.weights.items())


def summary(run: ToyRun) -> str:
    """The run as text: settings, one line per step, where the particles ended."""
    world, cond = run.world, run.cond
    lines = [
        f"toy world: {len(world.words)} words ({', '.join(world.words)}), "
        f"{len(world.clusters)} clusters, leak {world.leak:g}",
        f"prompt {cond.prompt!r} → {describe_prompt(cond)}"
        + (f"   (ignored filler: {' '.join(cond.words.ignored)})" if cond.words.ignored else ""),
    ]
    if run.negative is not None:
        lines.append(f"negative {run.negative.prompt!r} → {describe_prompt(run.negative)}")
    lines.append(
        f"sampler {run.sampler} · schedule {run.schedule_used} · {run.steps} steps · CFG {run.cfg:g} · "
        f"seed {run.seed} · {run.particles} particles · denoiser calls {run.calls.get('cond', 0)} cond + "
        f"{run.calls.get('uncond', 0)} uncond"
    )
    lines.append(f"{'step':>5}  {'σ_i':>8} → {'σ_i+1':<8} {'mean|x|':>9} {'mean|x̂0|':>10}")  # x̂: 2 chars
    norms = run.xs.norm(dim=-1).mean(-1)
    d_norms = run.denoised.norm(dim=-1).mean(-1)
    lines.append(f"{'start':>5}  {float(run.sigmas[0]):8.4f}   {'':<8} {float(norms[0]):9.4f}")
    for i in range(run.steps):
        s, s_next = (float(v) for v in run.step_sigmas[i])
        lines.append(f"{i:>5}  {s:8.4f} → {s_next:<8.4f} {float(norms[i + 1]):9.4f} {float(d_norms[i]):9.4f}")
    fractions = run.end_fractions()
    prompt_words = list(cond.words.weights) or list(world.words)
    parts = [f"{w} {100 * fractions[w]:.1f}%" for w in prompt_words]
    other = 1.0 - sum(fractions[w] for w in prompt_words)
    if cond.words.weights:
        parts.append(f"other words {100 * other:.1f}%")
    lines.append("end: particles nearest each word's cluster: " + ", ".join(parts))
    return "\n".join(lines)


# ---------------------------------------------------------------------- CLI


def run(args: argparse.Namespace) -> int:
    """Run the ``toy`` subcommand; returns the exit code (0 ok, 2 bad input)."""
    from .plot import plot_run

    try:
        world = ToyWorld.default(leak=getattr(args, "leak", 0.02))
        result = simulate(
            world,
            args.prompt,
            sampler=args.sampler,
            steps=args.steps,
            schedule=args.schedule,
            cfg=args.cfg,
            negative=args.negative,
            seed=args.seed,
            particles=args.particles,
        )
    except (UnknownWordError, UnknownNameError, ValueError) as error:
        print(f"glassforge toy: error: {error}", file=sys.stderr)
        return 2
    print(summary(result))
    plot_run(result, args.out)
    print(f"wrote {args.out}")
    return 0
