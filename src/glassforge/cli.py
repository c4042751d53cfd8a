"""The ``glassforge`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap


def _list_samplers(args: argparse.Namespace) -> int:
    from .sampling import SAMPLERS

    if args.markdown:
        from .sampling.catalog import samplers_markdown

        print(samplers_markdown(), end="")
        return 0
    width = max(len(n) for n in SAMPLERS)
    for name in SAMPLERS:
        info = SAMPLERS[name]
        flags = []
        if info.default_schedule:
            flags.append(f"schedule {info.default_schedule}")
        if info.second_order:
            flags.append("2 calls/step")
        if info.stochastic or info.brownian:
            flags.append("SDE noise" if info.brownian else "ancestral noise")
        if info.needs_uncond:
            flags.append("CFG++")
        extra = f" [{', '.join(flags)}]" if flags else ""
        print(f"{name:<{width}}  {info.description}{extra}")
        if args.verbose:
            pad = " " * (width + 2)
            print(f"{pad}aliases: {', '.join(info.aliases) or '-'}")
            print(
                textwrap.fill(
                    info.formula, 100, initial_indent=pad + "update:  ", subsequent_indent=pad + "  "
                )
            )
            print(f"{pad}paper:   {info.reference}")
    return 0


def _list_schedules(args: argparse.Namespace) -> int:
    from .sampling import SCHEDULES

    width = max(len(n) for n in SCHEDULES)
    for name in SCHEDULES:
        info = SCHEDULES[name]
        print(f"{name:<{width}}  {info.description}")
        if args.verbose:
            pad = " " * (width + 2)
            print(f"{pad}aliases: {', '.join(info.aliases) or '-'}")
            print(
                textwrap.fill(
                    info.formula, 100, initial_indent=pad + "σ:       ", subsequent_indent=pad + "  "
                )
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="glassforge",
        description="A text-to-image diffusion engine made of glass: every step from prompt to pixels, shown.",
    )
    parser.add_argument("--version", action="version", version=f"glassforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("samplers", help="list the samplers (A1111/Forge names; ComfyUI names are aliases)")
    p.add_argument("-v", "--verbose", action="store_true", help="also show aliases, update formula and paper")
    p.add_argument(
        "--markdown", action="store_true", help="print the catalogue of samplers and schedules (docs)"
    )
    p.set_defaults(func=_list_samplers)

    p = sub.add_parser("schedulers", help="list the sigma schedules ('Schedule type')")
    p.add_argument("-v", "--verbose", action="store_true", help="also show aliases and formula")
    p.set_defaults(func=_list_schedules)

    from . import generate_cli, pngfile
    from .explain import cli as explain_cli
    from .graph import cli as graph_cli
    from .server import cli as server_cli
    from .toy import cli as toy_cli
    from .train import cli as train_cli

    generate_cli.add_parsers(sub)
    graph_cli.add_parsers(sub)
    explain_cli.add_parser(sub)
    toy_cli.add_parser(sub)
    train_cli.add_parser(sub)
    pngfile.add_parser(sub)
    server_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. Bad input (a wrong name, value or file) is one line on stderr and exit code 2;
    set GLASSFORGE_DEBUG=1 for the full traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, LookupError, OSError) as err:
        if os.environ.get("GLASSFORGE_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"glassforge {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
