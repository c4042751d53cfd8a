"""``glassforge generate``, ``glassforge models`` and ``glassforge tokenize``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path


def _progress(total_steps: int, images: int):
    """A one-line progress bar on stderr: step, s/it, ETA — redrawn in place on a terminal; elsewhere (logs,
    pipes) only the final line, so a log does not fill with carriage-return frames."""
    state = {"done": 0, "start": time.perf_counter()}
    total = total_steps * images
    live = sys.stderr.isatty()

    def on_event(event) -> None:
        from .sampling.events import SamplerStep

        if not isinstance(event, SamplerStep):
            return
        state["done"] += 1
        done = state["done"]
        elapsed = time.perf_counter() - state["start"]
        per = elapsed / done
        eta = per * (total - done)
        if not live and done != total:
            return
        bar = "#" * int(30 * done / total)
        sys.stderr.write(f"\r[{bar:<30}] step {done}/{total}  {per:.2f} s/it  ETA {eta:.0f}s ")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return on_event


def add_generate_options(p: argparse.ArgumentParser) -> None:
    """The options that describe a generation (shared by ``generate`` and ``explain``)."""
    p.add_argument("prompt")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--model", default=None, help="checkpoint path or name (default: the embedded model)")
    p.add_argument("--models-dir", action="append", default=[], help="extra folder to look up model names")
    p.add_argument("--vae", default=None, help="a separate VAE file replacing the checkpoint's")
    p.add_argument("--prediction", choices=["eps", "v"], default=None, help="override v-prediction detection")
    p.add_argument("--sampler", default="DPM++ 2M")
    p.add_argument("--scheduler", default="Automatic", help="schedule type (see 'glassforge schedulers')")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=7.0, help="CFG scale")
    p.add_argument("--seed", type=int, default=-1, help="-1 = random (reported)")
    p.add_argument("--width", type=int, default=None, help="default: the model family's size")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--batch-count", type=int, default=1)
    p.add_argument("--clip-skip", type=int, default=1)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument(
        "--convention",
        choices=["a1111", "comfyui"],
        default="a1111",
        help="whose seed/noise and timestep rules to follow (default a1111; comfyui gives ComfyUI's image)",
    )
    p.add_argument(
        "--freeu",
        default=None,
        metavar="SPEC",
        help="FreeU: b1,b2,s1,s2 (v2, as Forge), v1:b1,b2,s1,s2, v2 or v1 (the family's published "
        "factors), or a preset sd14/sd15/sd21/sdxl",
    )


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="text to image (A1111 semantics; writes PNGs with infotext)")
    add_generate_options(p)
    p.add_argument("--out", default="outputs", help="output folder (files are never overwritten)")
    p.set_defaults(func=run_generate)

    p = sub.add_parser("models", help="list the checkpoints found, with detected family and hash")
    p.add_argument("--models-dir", action="append", default=[])
    p.set_defaults(func=run_models)

    p = sub.add_parser("tokenize", help="show the tokens and ids the text encoder receives")
    p.add_argument("prompt")
    p.add_argument("--family", choices=["sd1", "sd2", "sdxl"], default="sd1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_tokenize)


def _cache_file() -> Path:
    return Path.home() / ".glassforge" / "hashes.json"


def load_for_generation(args: argparse.Namespace):
    """From parsed generate options: (Txt2ImgParams with seed and size resolved, ModelManager, ManagedModel,
    model path, resolved FreeU or None). Names, sizes and counts are checked before the (slow) load."""
    from .models.freeu import parse_freeu
    from .models.locate import find_model, model_folders
    from .models.manager import ModelManager
    from .models.runtime import resolve_runtime
    from .txt2img import validate

    started = time.perf_counter()
    params = validate(_params_from_args(args), default_size=512)  # checked before the (slow) load; seed fixed
    freeu = parse_freeu(args.freeu) if args.freeu is not None else None
    folders = model_folders(args.models_dir)
    path = find_model(args.model, folders)
    manager = ModelManager(
        folders=[path.parent, *folders], runtime=resolve_runtime(args.device, args.precision)
    )
    manager.vae, manager.prediction = (Path(args.vae) if args.vae else None), args.prediction
    managed = manager.get(path.name)
    model = managed.model
    print(
        f"model {path.name}: {model.family_info.label}, {model.prediction}-prediction, "
        f"{manager.runtime.device.type} {manager.runtime.precision} (loaded in {time.perf_counter() - started:.1f}s)",
        file=sys.stderr,
    )
    size = model.default_size
    params = dataclasses.replace(params, width=args.width or size, height=args.height or size)
    if freeu is not None:
        freeu = freeu.resolve(model.family)
        print(
            f"FreeU v{freeu.version}: b1 {freeu.b1}, b2 {freeu.b2}, s1 {freeu.s1}, s2 {freeu.s2}",
            file=sys.stderr,
        )
    return params, manager, managed, path, freeu


def prepare_generation(args: argparse.Namespace):
    """For ``txt2img`` callers (explain): (Txt2ImgParams, loaded model, model path, UNet patcher, model hash)."""
    from .models.patcher import UNetPatcher

    params, _, managed, path, freeu = load_for_generation(args)
    unet = UNetPatcher(managed.model.unet)
    if freeu is not None:
        unet = unet.with_patch(freeu.patch())
    return params, managed.model, path, unet, managed.hash


def run_generate(args: argparse.Namespace) -> int:
    """Runs the built-in text-to-image workflow (glassforge.graph.builtin) with A1111's convention; the
    model load and prompt encoding are cached across batches."""
    from .graph.builtin import txt2img_workflow
    from .graph.env import GraphEnv
    from .graph.executor import Executor
    from .graph.nodes import core_nodes

    started = time.perf_counter()
    params, manager, _, path, freeu = load_for_generation(args)
    executor = Executor(core_nodes(), GraphEnv(models=manager, output_dir=Path(args.out)))
    progress = _progress(args.steps, args.batch_count)  # a batch steps together
    for n in range(params.batch_count):
        batch = dataclasses.replace(
            params,
            seed=params.seed + n * params.batch_size if not params.subseed_strength else params.seed,
            subseed=params.subseed + n * params.batch_size,
        )
        workflow = txt2img_workflow(batch, path.name, freeu=freeu, convention=args.convention)
        result = executor.run(workflow, on_event=progress)
        if result.status != "success":
            raise RuntimeError(result.error)
        for image in result.outputs["9"]["images"]:
            print(image["path"])
    print(f"seed {params.seed} · {time.perf_counter() - started:.1f}s in all", file=sys.stderr)
    return 0


def _params_from_args(args: argparse.Namespace):
    from .txt2img import Txt2ImgParams

    return Txt2ImgParams(
        prompt=args.prompt,
        negative_prompt=args.negative,
        seed=args.seed,
        sampler=args.sampler,
        schedule=args.scheduler,
        steps=args.steps,
        cfg_scale=args.cfg,
        width=args.width,
        height=args.height,
        batch_size=args.batch_size,
        batch_count=args.batch_count,
        clip_skip=args.clip_skip,
        convention=args.convention,
    )


def run_models(args: argparse.Namespace) -> int:
    from .models.detect import detect_file
    from .models.locate import embedded_model_path, list_checkpoints, model_folders
    from .pngfile import model_hash

    folders = model_folders(args.models_dir)
    paths = list_checkpoints(folders)
    if embedded_model_path().is_file():
        paths.insert(0, embedded_model_path())
    if not paths:
        print("no checkpoints found in: " + ", ".join(str(f) for f in folders))
        return 0
    for path in paths:
        try:
            if path.is_dir():
                print(f"{path}  diffusers folder")
                continue
            found = detect_file(path)
            print(f"{path}  {found.family.label}  {found.prediction}  hash {model_hash(path, _cache_file())}")
        except Exception as err:  # one bad file must not hide the others
            print(f"{path}  unreadable: {err}")
    return 0


def run_tokenize(args: argparse.Namespace) -> int:
    from .models.tokenizer import EOS_ID, tokenizers_for_family

    tokenizer = tokenizers_for_family(args.family)[0]
    tp = tokenizer.tokenize_prompt(args.prompt)
    tokens = [
        {"text": tokenizer.token_text(i), "id": i, "weight": w, "chunk": c}
        for c, chunk in enumerate(tp.chunks)
        for i, w in zip(chunk.ids, chunk.weights, strict=True)
    ]
    if args.json:
        print(json.dumps({"tokens": tokens, "count": tp.counter}, ensure_ascii=False))
        return 0
    print(f"{tp.counter} tokens, {len(tp.chunks)} chunk(s) of 77 (BOS + 75 + EOS)")
    for c, chunk in enumerate(tp.chunks):
        body = range(chunk.ids.index(EOS_ID, 1) + 1)
        for position in body:
            i, w = chunk.ids[position], chunk.weights[position]
            weight = f"  ×{w:.3g}" if w != 1.0 else ""
            print(f"  chunk {c}  {position:>2}  {i:>5}  {tokenizer.token_text(i)}{weight}")
        padding = len(chunk.ids) - len(body)
        if padding:
            print(
                f"  chunk {c}  …   {padding} × {chunk.ids[-1]} {tokenizer.token_text(chunk.ids[-1])} (padding)"
            )
    return 0
