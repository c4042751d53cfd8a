"""``glassforge explain PROMPT [generate options] --out DIR [--format html|text] [--lang en|ja]``.

Runs the same ``txt2img`` as ``generate`` (same options, same image, bit for bit) with a trace
recorder listening, and writes into DIR: ``image-<k>.png`` (with infotext), ``trace.json``,
``trace.safetensors``, ``denoise.gif`` and, for ``--format html``, ``index.html``; ``--format text``
prints the walk-through instead. Kept free of heavy imports at module level.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``explain`` subcommand to an argparse ``subparsers`` object; returns its parser."""
    from ..generate_cli import add_generate_options

    p = subparsers.add_parser(
        "explain",
        help="generate one image and explain every step from prompt to pixels (HTML report or text)",
        description="Generate exactly as 'generate' does, record every number on the way (tokens, text "
        "vectors, noise, σ schedule, each model call and sampler step, the decode) and explain it: a "
        "self-contained index.html (or the same walk-through as text), trace.json + trace.safetensors "
        "and denoise.gif.",
    )
    add_generate_options(p)
    p.add_argument("--out", default="explain", help="output folder (default: ./explain)")
    p.add_argument("--format", choices=["html", "text"], default="html", help="report format (default: html)")
    p.add_argument("--lang", choices=["en", "ja"], default="en", help="language of the report (default: en)")
    p.add_argument(
        "--preview",
        choices=["auto", "vae", "rgb"],
        default="auto",
        help="how per-step x0 predictions are drawn: the full VAE decode, the fast latent→RGB projection, or "
        "auto (VAE for small models, RGB for real SD VAEs)",
    )
    p.add_argument("--toy", action="store_true", help="explain the 2-D toy world instead: PROMPT is its words "
                   "(e.g. 'dog' or 'dog, cat'); no model is loaded (see 'glassforge toy')")  # fmt: skip
    p.add_argument("--particles", type=int, default=200, help="with --toy: particles (default: 200)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if getattr(args, "toy", False):
        from .toy_report import run as run_toy

        return run_toy(args)
    import dataclasses

    import torch

    from ..generate_cli import prepare_generation
    from ..pngfile import write_image
    from ..txt2img import txt2img
    from .attention import record_attention
    from .recorder import TraceRecorder
    from .report import write_report
    from .text import walkthrough
    from .trace import from_recorder

    out = Path(args.out)
    started = time.perf_counter()
    params, model, path, unet, digest = prepare_generation(args)
    recorder = TraceRecorder()
    recorder.describe_model(model, path.stem)
    unet = record_attention(recorder, unet)  # cross-attention maps per word (observing changes nothing)
    with torch.inference_mode():
        result = txt2img(model, params, model_name=path.stem, model_hash=digest, on_event=recorder, unet=unet)
    generated = time.perf_counter()
    recorder.meta["params"] = {
        **{k: v for k, v in dataclasses.asdict(result.params).items() if k != "sampler_options"},
        "seeds": result.seeds,
        "infotexts": result.infotexts,
        "model_hash": digest,
    }
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for k, (image, text) in enumerate(zip(result.images, result.infotexts, strict=True)):
        images.append(write_image(image, out / f"image-{k}.png", text))
    recorder.meta["images"] = [p.name for p in images]
    recorder.save(out)
    trace = from_recorder(recorder)
    with torch.inference_mode():
        written = write_report(
            trace, model, out, lang=args.lang, preview=args.preview, html=args.format == "html"
        )
    if args.format == "text":
        sys.stdout.write(walkthrough(trace, args.lang))
    print(
        f"explain: {len(images)} image(s), trace and report in {out} "
        f"(load + generation {generated - started:.1f}s, report {time.perf_counter() - generated:.1f}s)",
        file=sys.stderr,
    )
    for p in [*images, out / "trace.json", out / "trace.safetensors", *written.values()]:
        print(p, file=sys.stderr)
    return 0
