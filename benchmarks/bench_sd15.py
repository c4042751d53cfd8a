"""glassforge vs diffusers on an SD1.5-shaped model with random weights (issue 3, item 9).

    .venv/bin/python benchmarks/bench_sd15.py                       # the full run: 512×512, 20 steps
    .venv/bin/python benchmarks/bench_sd15.py --size 256 --steps 3  # a quick probe
    .venv/bin/python benchmarks/bench_sd15.py --sdxl                # SDXL 1024×1024, 2 steps + decode

The model is SD1.5 at full size (UNet 860 M, VAE 84 M, CLIP-L 123 M parameters; shapes from
``tests/checkpoint_fixtures.py``'s ``REAL`` specs, which follow the published diffusers configs) with
seeded random weights (N(0, 1/fan_in), norm scales 1). It is written once, in fp16, both as a single
``.safetensors`` file in the original layout (what glassforge loads) and as a diffusers folder written
from the same modules (what ``StableDiffusionPipeline.from_pretrained`` loads), under ``--cache-dir``.
The diffusers folder's tokenizer is transformers' ``CLIPTokenizer`` built from the CLIP BPE merges that
glassforge reconstructs offline (``glassforge.models.tokenizer.bundled_bpe_merges``); its ids are
checked against glassforge's tokenizer, so both engines encode the same tokens. Nothing touches the hub.

Each engine runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own: load, then one
generation (prompt → text encoder → 2 UNet rows per step with CFG → VAE decode → PIL image), no warm-up.
Engines: ``glassforge`` (precision ``auto``, what ``glassforge generate`` does), ``glassforge-fp32``,
``diffusers-fp32`` (its default dtype) and ``diffusers-bf16``; sampler DPM++ 2M with Karras sigmas in
both (diffusers: ``DPMSolverMultistepScheduler(use_karras_sigmas=True)``). UNet time is measured by
forward hooks on the UNet module, VAE time around ``vae.decode``; "total" is the generation call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DIFFUSERS_OFFLINE": "1"}
ENGINES = ("glassforge", "diffusers-fp32", "diffusers-bf16")
ALL_ENGINES = (*ENGINES, "glassforge-fp32")
PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed, sharp focus"
SEED = 1234
FORMAT_VERSION = "1"  # bump when the written model changes
GOALS = {  # issue 3, item 9
    "total_vs_diffusers_fp32": 0.6,
    "total_vs_diffusers_bf16": 0.9,
    "unet_vs_diffusers_bf16": 0.85,
    "sd15_peak_rss_gb": 4.0,
    "sdxl_peak_rss_gb": 20.0,
}
SD15_SCHEDULER = {  # SD1.5's published scheduler config (swapped for DPM++ 2M Karras at run time)
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


# ---- the model on disk -----------------------------------------------------------------------------


def _fixtures():
    sys.path.insert(0, str(ROOT / "tests"))
    import checkpoint_fixtures

    return checkpoint_fixtures


def _randomize(module, seed: int, dtype) -> None:
    """Seeded N(0, 1/fan_in) weights, norm scales 1, small biases; built straight in ``dtype``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, p in module.named_parameters():
        if p.ndim == 1:
            t = torch.ones(p.shape) if name.endswith("weight") else torch.randn(p.shape, generator=gen) * 0.02
        else:
            t = torch.randn(p.shape, generator=gen) * math.prod(p.shape[1:]) ** -0.5
        state[name] = t.to(dtype)
    module.load_state_dict(state, strict=False, assign=True)
    module.eval().requires_grad_(False)


def _clip_tokenizer():
    """transformers' CLIPTokenizer from the BPE merges glassforge reconstructs (vocab = bytes, bytes + </w>,
    merges, specials), checked to give glassforge's ids for the benchmark prompt."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from glassforge.models.tokenizer import ClipTokenizer, bundled_bpe_merges

    merges = bundled_bpe_merges()
    if merges is None:
        raise SystemExit("instant-clip-tokenizer does not bundle the CLIP merges; cannot build the tokenizer")
    chars = list(bytes_to_unicode().values())
    vocab = [*chars, *(c + "</w>" for c in chars), *("".join(m) for m in merges)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=list(merges), model_max_length=77)
    ours = ClipTokenizer("clip-l").encode(PROMPT)
    theirs = tok(PROMPT).input_ids[1:-1]
    if ours != theirs:
        raise SystemExit(f"tokenizers disagree on the benchmark prompt: {ours} vs {theirs}")
    return tok


def prepare(family: str, cache: Path) -> dict:
    """Write the random-weight model (single file + diffusers folder for SD1.5) unless already there."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    fx = _fixtures()
    out = cache / f"{family}-random-v{FORMAT_VERSION}"
    single, folder, done = out / "model.safetensors", out / "diffusers", out / "DONE"
    if done.is_file():
        return {"single_file": str(single), "diffusers": str(folder) if family == "sd1" else None}
    out.mkdir(parents=True, exist_ok=True)
    spec = fx.REAL[family]
    xl = family == "sdxl"
    unet_cfg = {**spec.unet, "sample_size": 128 if xl else 64}
    vae_cfg = {**spec.vae, "sample_size": 1024 if xl else 512, "scaling_factor": 0.13025 if xl else 0.18215}
    with init_empty_weights(include_buffers=False):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        texts = [
            (CLIPTextModelWithProjection if xl and i == 1 else CLIPTextModel)(fx.clip_config(c))
            for i, c in enumerate(spec.clips)
        ]
    for i, m in enumerate((unet, vae, *texts)):
        _randomize(m, seed=i, dtype=torch.float16)
    extra = {
        p + "logit_scale": torch.tensor(4.6052)
        for p, layout in zip(spec.clip_prefixes, spec.clip_layouts, strict=True)
        if layout == "open_clip"
    }
    models = fx.TinyModels(spec, unet, vae, texts, extra)
    fx.write_single_file(models, single, metadata={"glassforge_benchmark": "random weights"})
    if family == "sd1":
        unet.save_pretrained(folder / "unet")
        vae.save_pretrained(folder / "vae")
        texts[0].save_pretrained(folder / "text_encoder")
        _clip_tokenizer().save_pretrained(folder / "tokenizer")
        (folder / "scheduler").mkdir(exist_ok=True)
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER, indent=2))
        index = {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    done.write_text("ok\n")
    return {"single_file": str(single), "diffusers": str(folder) if family == "sd1" else None}


# ---- one engine, in its own process ------------------------------------------------------------------


class _Timer:
    """Wall time of every UNet forward (hooks) and every ``vae.decode`` call."""

    def __init__(self, unet, vae):
        self.unet_calls: list[float] = []
        self.unet_cpu: list[float] = []
        self.decode_calls: list[float] = []
        self._start = self._cpu = 0.0
        unet.register_forward_pre_hook(self._pre)
        unet.register_forward_hook(self._post)
        inner = vae.decode

        def timed_decode(*args, **kwargs):
            t = time.perf_counter()
            result = inner(*args, **kwargs)
            self.decode_calls.append(time.perf_counter() - t)
            return result

        vae.decode = timed_decode

    def _pre(self, *_):
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def _post(self, *_):
        self.unet_calls.append(time.perf_counter() - self._start)
        self.unet_cpu.append(time.process_time() - self._cpu)

    def summary(self, steps: int) -> dict:
        per_step = len(self.unet_calls) // steps
        step_times = [sum(self.unet_calls[i : i + per_step]) for i in range(0, per_step * steps, per_step)]
        ordered = sorted(step_times[1:] or step_times)
        return {
            "unet_calls": len(self.unet_calls),
            "unet_s_per_step": sum(step_times) / steps,
            "unet_s_per_step_first": step_times[0],
            "unet_s_per_step_median_after_first": ordered[len(ordered) // 2],
            "unet_cpu_s_per_step": sum(self.unet_cpu) / steps,  # CPU time of all threads
            "vae_decode_s": sum(self.decode_calls),
        }


def _run_glassforge(job: dict) -> dict:
    import torch

    from glassforge.models.loader import load_model
    from glassforge.models.runtime import place_model, resolve_runtime
    from glassforge.txt2img import Txt2ImgParams, txt2img

    runtime = resolve_runtime("cpu", job["precision"])
    t = time.perf_counter()
    model = place_model(load_model(job["single_file"]), runtime)
    load_s = time.perf_counter() - t
    rss_after_load = _rss_gb()
    timer = _Timer(model.unet, model.vae)
    params = Txt2ImgParams(
        PROMPT,
        "",
        seed=SEED,
        sampler="DPM++ 2M",
        schedule="Karras",
        steps=job["steps"],
        cfg_scale=job["cfg"],
        width=job["size"],
        height=job["size"],
    )
    t, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        result = txt2img(model, params)
    total, total_cpu = time.perf_counter() - t, time.process_time() - cpu
    _save(result.images[0], job)
    return {
        "precision": f"{runtime.precision} (VAE {str(runtime.vae_dtype).removeprefix('torch.')})",
        "attention": type(next(iter(model.unet.attn_processors.values()))).__name__,
        "load_s": load_s,
        "total_s": total,
        "total_cpu_s": total_cpu,
        "rss_after_load_gb": rss_after_load,
        **timer.summary(job["steps"]),
    }


def _run_diffusers(job: dict) -> dict:
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    dtype = torch.bfloat16 if job["engine"].endswith("bf16") else torch.float32
    t = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(
        job["diffusers"], torch_dtype=dtype, safety_checker=None, local_files_only=True
    )
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t
    rss_after_load = _rss_gb()
    timer = _Timer(pipe.unet, pipe.vae)
    t, cpu = time.perf_counter(), time.process_time()
    image = pipe(
        PROMPT,
        negative_prompt="",
        num_inference_steps=job["steps"],
        guidance_scale=job["cfg"],
        height=job["size"],
        width=job["size"],
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    total, total_cpu = time.perf_counter() - t, time.process_time() - cpu
    _save(image, job)
    return {
        "precision": str(dtype).removeprefix("torch."),
        "attention": type(next(iter(pipe.unet.attn_processors.values()))).__name__,
        "load_s": load_s,
        "total_s": total,
        "total_cpu_s": total_cpu,
        "rss_after_load_gb": rss_after_load,
        **timer.summary(job["steps"]),
    }


def _save(image, job: dict) -> None:
    if job.get("images_dir"):
        Path(job["images_dir"]).mkdir(parents=True, exist_ok=True)
        image.save(Path(job["images_dir"]) / f"{job['engine']}-{job['size']}-{job['steps']}.png")


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def worker(job: dict) -> dict:
    import torch

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    run = _run_diffusers if job["engine"].startswith("diffusers") else _run_glassforge
    result = run(job)
    result["peak_rss_gb"] = _rss_gb()
    result["threads"] = torch.get_num_threads()
    return result


# ---- orchestration and report ------------------------------------------------------------------------


def _subprocess(argv: list[str], what: str) -> dict:
    env = {**os.environ, **OFFLINE}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, *argv, "--result-file", str(out)], env=env, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"{what} failed with exit code {proc.returncode}")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from glassforge.models.runtime import cpu_has_fast_bf16

    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "native_bf16": cpu_has_fast_bf16(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
    }


def _ratios(results: dict) -> dict:
    g, d32, d16 = (results.get(k) for k in ENGINES)
    out = {}
    if g and d32:
        out["total_vs_diffusers_fp32"] = g["total_s"] / d32["total_s"]
    if g and d16:
        out["total_vs_diffusers_bf16"] = g["total_s"] / d16["total_s"]
        out["unet_vs_diffusers_bf16"] = g["unet_s_per_step"] / d16["unet_s_per_step"]
        out["vae_vs_diffusers_bf16"] = g["vae_decode_s"] / d16["vae_decode_s"]
    if g and d32:
        out["unet_vs_diffusers_fp32"] = g["unet_s_per_step"] / d32["unet_s_per_step"]
    return out


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"{s['model']}, {s['size']}×{s['size']}, {s['steps']} steps, CFG {s['cfg']}, batch 1, DPM++ 2M Karras",
        "",
        "| engine | precision | UNet s/step | VAE decode s | total s | load s | peak RSS GB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['precision']} | {r['unet_s_per_step']:.3f} | {r['vae_decode_s']:.2f} | "
            f"{r['total_s']:.2f} | {r['load_s']:.1f} | {r['peak_rss_gb']:.2f} |"
        )
    if report["ratios"]:
        lines += ["", "| ratio (glassforge / other) | measured | goal |", "|---|---:|---:|"]
        for key, value in report["ratios"].items():
            goal = GOALS.get(key)
            mark = "" if goal is None else (f"≤ {goal} ✓" if value <= goal else f"≤ {goal} ✗")
            lines.append(f"| {key.replace('_', ' ')} | {value:.2f} | {mark} |")
    for key in ("sd15_peak_rss_gb", "sdxl_peak_rss_gb"):
        if key in report.get("checks", {}):
            value = report["checks"][key]
            ok = "✓" if value <= GOALS[key] else "✗"
            lines.append(f"\nglassforge peak RSS {value:.2f} GB (goal ≤ {GOALS[key]} GB {ok})")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=None, help="width = height (default 512; 1024 with --sdxl)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default 20; 2 with --sdxl)")
    p.add_argument("--cfg", type=float, default=7.0)
    p.add_argument("--engines", default=None, help=f"comma list from {', '.join(ALL_ENGINES)}")
    p.add_argument("--sdxl", action="store_true", help="SDXL-shaped model, glassforge only (RSS check)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("GLASSFORGE_BENCH_DIR", "/tmp/glassforge-bench")),
    )
    p.add_argument(
        "--json", type=Path, default=None, help="where to write the report (default: in the cache dir)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--save-images", action="store_true", help="keep each engine's image in the cache dir")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--prepare", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.update(OFFLINE)
    if args.prepare:
        args.result_file.write_text(json.dumps(prepare(args.prepare, args.cache_dir)))
        return 0
    if args.worker:
        args.result_file.write_text(json.dumps(worker(json.loads(args.worker))))
        return 0

    family = "sdxl" if args.sdxl else "sd1"
    size = args.size or (1024 if args.sdxl else 512)
    steps = args.steps or (2 if args.sdxl else 20)
    engines = args.engines.split(",") if args.engines else (["glassforge"] if args.sdxl else list(ENGINES))
    unknown = [e for e in engines if e not in ALL_ENGINES or (args.sdxl and e.startswith("diffusers"))]
    if unknown:
        raise SystemExit(f"unknown engine(s) {', '.join(unknown)}; expected some of {', '.join(ALL_ENGINES)}"
                         + (" (diffusers is not run with --sdxl)" if args.sdxl else ""))  # fmt: skip
    print(f"preparing the {family} random-weight model in {args.cache_dir} (once) …", file=sys.stderr)
    paths = _subprocess(["--prepare", family, "--cache-dir", str(args.cache_dir)], "preparing the model")
    report = {
        "machine": machine(),
        "settings": {
            "model": "SDXL-shaped (random weights)" if args.sdxl else "SD1.5-shaped (random weights)",
            "size": size,
            "steps": steps,
            "cfg": args.cfg,
            "batch": 1,
            "prompt": PROMPT,
            "seed": SEED,
            "sampler": "DPM++ 2M Karras",
            "engines": engines,
        },
        "results": {},
    }
    for engine in engines:
        print(f"running {engine} …", file=sys.stderr)
        job = {"engine": engine, "size": size, "steps": steps, "cfg": args.cfg, "threads": args.threads,
               "precision": "fp32" if engine == "glassforge-fp32" else "auto", **paths,
               "images_dir": str(args.cache_dir / "images") if args.save_images else None}  # fmt: skip
        report["results"][engine] = _subprocess(["--worker", json.dumps(job)], engine)
        r = report["results"][engine]
        print(f"  {engine}: {r['unet_s_per_step']:.3f} s/step, VAE {r['vae_decode_s']:.2f} s, "
              f"total {r['total_s']:.2f} s, peak RSS {r['peak_rss_gb']:.2f} GB", file=sys.stderr)  # fmt: skip
    report["ratios"] = {} if args.sdxl else _ratios(report["results"])
    if "glassforge" in report["results"]:
        key = "sdxl_peak_rss_gb" if args.sdxl else "sd15_peak_rss_gb"
        report["checks"] = {key: report["results"]["glassforge"]["peak_rss_gb"]}
    text = markdown(report)
    print(text)
    path = args.json or args.cache_dir / f"bench-{family}-{size}px-{steps}steps.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "markdown": text}, indent=2))
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
