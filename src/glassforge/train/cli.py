"""``glassforge train shapes|export`` and ``glassforge eval-shapes``: argument parsing and glue only."""

from __future__ import annotations

import argparse
import os


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train the embedded glassforge-shapes model (resumable)")
    tsub = p.add_subparsers(dest="train_command", metavar="WHAT", required=True)
    s = tsub.add_parser("shapes", help="train VAE, text encoder and UNet on the procedural shapes dataset")
    s.add_argument("--out", default="out/train/shapes", help="run directory (resumes if it holds a state.pt)")
    s.add_argument("--recipe", default="shapes", help="named recipe: shapes, probe, tiny (default: shapes)")
    s.add_argument("--steps", type=int, help="diffusion steps (may be raised when resuming)")
    s.add_argument("--vae-steps", type=int, help="VAE steps (may be changed while the VAE phase runs)")
    s.add_argument("--seed", type=int, help="override the recipe's seed (new runs only)")
    s.add_argument(
        "--max-minutes", type=float, help="stop the diffusion phase after this much total training time"
    )
    s.add_argument(
        "--no-progress", action="store_true", help="no progress bar (the log file is always written)"
    )
    s.set_defaults(func=run_train)
    d = tsub.add_parser(
        "decoder", help="fine-tune a run's VAE decoder on its cached latents (second process)"
    )
    d.add_argument("run", help="run directory past its cache phase")
    d.add_argument("--steps", type=int, default=2000)
    d.set_defaults(func=run_decoder)
    e = tsub.add_parser("export", help="write a run's EMA weights as the SD1 single-file checkpoint")
    e.add_argument("run", help="run directory")
    e.add_argument("--out", help="output .safetensors (default: the package's glassforge-shapes.safetensors)")
    e.add_argument("--fp32", action="store_true", help="keep float32 (default: float16)")
    e.set_defaults(func=run_export)

    p = sub.add_parser(
        "eval-shapes", help="prompt-adherence table of a shapes model (colour, shape, size, position)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="single-file checkpoint (default: the shipped glassforge-shapes)")
    src.add_argument("--run", help="a training run directory (evaluates its latest EMA checkpoint)")
    p.add_argument("--sampler", default="Euler")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument(
        "--n", type=int, default=100, help="prompts with seen colour×shape pairs (half as many held out)"
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--grid", help="also write a PNG of the first generated images with their prompts")
    p.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .recipes import get_recipe
    from .trainer import Trainer

    recipe = get_recipe(args.recipe, steps=args.steps, vae_steps=args.vae_steps, seed=args.seed)
    trainer = Trainer(recipe, args.out, log=print if args.no_progress else None)
    trainer.log(f"recipe {args.recipe}: {recipe}")
    trainer.run(progress=not args.no_progress, max_minutes=args.max_minutes)
    print(f"run directory: {args.out}  (export: glassforge train export {args.out})")
    return 0


def run_decoder(args: argparse.Namespace) -> int:
    from .decoder import finetune_decoder

    finetune_decoder(args.run, args.steps)
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from .export import DEFAULT_WEIGHTS, export_run

    out = export_run(args.run, args.out or DEFAULT_WEIGHTS, torch.float32 if args.fp32 else torch.float16)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import time

    import torch

    from . import shapes_eval as ev

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.run:
        generate = ev.run_dir_generator(args.run, args.steps, args.cfg, args.sampler)
        name = args.run
    else:
        from .export import DEFAULT_WEIGHTS

        name = args.model or str(DEFAULT_WEIGHTS)
        generate = ev.checkpoint_generator(name, args.steps, args.cfg, args.sampler)
    shown: list = []

    def keep(images, prompts, readings):
        if args.grid and len(shown) < 16:
            shown.extend(zip(images, prompts, readings, strict=True))

    t0 = time.perf_counter()
    result = ev.evaluate(generate, n=args.n, seed=args.seed, on_batch=keep)
    print(f"model {name}  sampler {args.sampler}  steps {args.steps}  cfg {args.cfg}  "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    print(result.table())
    if args.grid and shown:
        import numpy as np

        from .plots import save_grid

        shown = shown[:16]
        captions = [f"{p} → {r.colour} {r.shape}" for _, p, r in shown]
        save_grid(np.stack([im for im, _, _ in shown]), captions, __import__("pathlib").Path(args.grid))
        print(f"grid: {args.grid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m glassforge.train.cli train shapes ...`` — the same commands without the main CLI."""
    parser = argparse.ArgumentParser(prog="python -m glassforge.train.cli")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
