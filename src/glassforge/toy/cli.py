"""The ``glassforge toy`` command line (kept free of heavy imports so ``glassforge --help`` is fast)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``toy`` subcommand to an argparse ``subparsers`` object; returns its parser."""
    p = subparsers.add_parser(
        "toy",
        help="sample particles in the 2-D toy world and draw their paths from noise to words",
        description="Map a prompt into a 2-D pseudo-space where each word is a cluster, sample "
        "particles from seeded noise with a real sampler and σ schedule, and draw every step.",
    )
    p.add_argument(
        "prompt", nargs="?", default="dog", help="words of the toy world, e.g. 'dog' or '(cat:1.5) fish'"
    )
    p.add_argument("--sampler", default="DPM++ 2M", help="sampler name as in A1111/Forge (default: DPM++ 2M)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps (default: 10)")
    p.add_argument("--schedule", default="Automatic", help="schedule type (default: Automatic)")
    p.add_argument("--cfg", type=float, default=1.0, help="CFG scale (default: 1.0 = no guidance)")
    p.add_argument("--negative", default="", help="negative prompt (used when CFG ≠ 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default: 0)")
    p.add_argument("--particles", type=int, default=200, help="number of particles (default: 200)")
    p.add_argument(
        "--leak", type=float, default=0.02, help="share of the prior kept in a prompt (default: 0.02)"
    )
    p.add_argument("--out", default="toy.png", help="output PNG (default: toy.png)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .demo import run as run_demo

    return run_demo(args)
