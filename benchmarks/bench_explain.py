"""What explaining costs: ``glassforge explain`` vs ``glassforge generate`` on the embedded model (issue 5, item 4).

    .venv/bin/python benchmarks/bench_explain.py                    # 20 steps, 5 repeats, torch's threads
    .venv/bin/python benchmarks/bench_explain.py --threads 1 --json docs/bench-explain-20.json   # shared machine

Same arguments for both commands (the embedded model glassforge-shapes, 32×32, DPM++ 2M, 20 steps, CFG 7,
seed 1234, the default precision). Three measurements, each repeated and reported as the median:

1. **cli** — the whole command as a user runs it, each run in a fresh subprocess (Python start, imports,
   model load, generation, files, report), generate and explain alternating.
2. **in-process** — the same two commands (``generate_cli.run_generate`` and ``explain.cli.run``, the real
   code paths) repeated in one process after one warm-up run of each; the model is loaded once and reused
   (its load memoized), so this is the generation's own cost: explain = txt2img with the trace
   recorder (and the attention maps) + trace files + report; generate = txt2img with the progress bar + PNG.
3. **listeners** — ``txt2img`` alone with ``on_event=None`` (what an API caller gets), with a no-op listener
   (every event built, nothing kept), with the ``TraceRecorder`` (everything copied) and with the recorder plus
   the attention observer (what ``explain`` runs), interleaved after a warm-up, all giving the same image:
   plain generation pays nothing for the explainer's events.

The goal (issue 5): explain ≤ 3 × generate at 20 steps on the embedded model. Wall times; on a shared
machine single runs move with the load, which is recorded at start and end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red circle on a blue background"
SEED = 1234
GOAL = 3.0  # explain / generate, issue 5 item 4
CLI = "import sys; from glassforge.cli import main; sys.exit(main(sys.argv[1:]))"


def _common(steps: int) -> list[str]:
    return [PROMPT, "--steps", str(steps), "--seed", str(SEED)]


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _env(threads: int | None) -> dict[str, str]:
    """The environment for a fresh process; torch takes its thread count from OMP_NUM_THREADS."""
    return {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}


def bench_cli(steps: int, repeats: int, work: Path, threads: int | None = None) -> dict:
    """Each command in its own fresh Python process, alternating; wall time of the whole process."""
    times: dict[str, list[float]] = {"generate": [], "explain": []}
    for r in range(repeats):
        for command in ("generate", "explain"):
            out = work / f"cli-{command}-{r}"
            argv = [sys.executable, "-c", CLI, command, *_common(steps), "--out", str(out)]
            t = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=_env(threads))
            times[command].append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise SystemExit(f"{command} failed ({proc.returncode}):\n{proc.stderr}")
    return _summary(times, "explain", "generate")


def _load_model_once() -> None:
    """Make ``prepare_generation`` (which looks both up at call time) load and place the model only once."""
    from glassforge.models import loader, runtime

    load, place = loader.load_model, runtime.place_model
    loaded: dict = {}
    placed: dict = {}

    def load_once(path, **options):
        key = (str(path), tuple(sorted(options.items())))
        if key not in loaded:
            loaded[key] = load(path, **options)
        return loaded[key]

    def place_once(model, rt):
        if id(model) not in placed:
            placed[id(model)] = place(model, rt)
        return placed[id(model)]

    loader.load_model, runtime.place_model = load_once, place_once


def bench_in_process(steps: int, repeats: int, work: Path) -> dict:
    """The real ``generate`` and ``explain`` commands, model loaded once, after one warm-up run of each."""
    from glassforge import generate_cli
    from glassforge.cli import build_parser
    from glassforge.explain import cli as explain_cli

    _load_model_once()
    parser = build_parser()
    runs = {"generate": generate_cli.run_generate, "explain": explain_cli.run}
    times: dict[str, list[float]] = {"generate": [], "explain": []}
    for r in range(repeats + 1):  # r = 0 is the warm-up
        for command, run in runs.items():
            args = parser.parse_args([command, *_common(steps), "--out", str(work / f"in-{command}-{r}")])
            sink = io.StringIO()
            t = time.perf_counter()
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                code = run(args)
            elapsed = time.perf_counter() - t
            if code != 0:
                raise SystemExit(f"{command} failed ({code}):\n{sink.getvalue()}")
            if r > 0:
                times[command].append(elapsed)
    return _summary(times, "explain", "generate")


def bench_listeners(steps: int, repeats: int) -> dict:
    """txt2img with on_event=None vs a no-op listener vs the TraceRecorder (+ attention maps), interleaved."""
    import torch

    from glassforge.explain.recorder import TraceRecorder
    from glassforge.models.loader import load_model
    from glassforge.models.locate import embedded_model_path
    from glassforge.models.patcher import UNetPatcher
    from glassforge.models.runtime import place_model, resolve_runtime
    from glassforge.txt2img import Txt2ImgParams, txt2img

    try:
        from glassforge.explain.attention import record_attention
    except ImportError:  # before the attention maps
        record_attention = None

    model = place_model(load_model(embedded_model_path()), resolve_runtime("auto", "auto"))
    unet = UNetPatcher(model.unet)
    params = Txt2ImgParams(PROMPT, seed=SEED, steps=steps)

    def recorder(attention: bool):
        rec = TraceRecorder()
        rec.describe_model(model)
        return rec, (record_attention(rec, unet) if attention else unet)

    modes = {
        "on_event=None": lambda: (None, unet),
        "no-op listener": lambda: (lambda event: None, unet),
        "TraceRecorder": lambda: recorder(False),
    }
    if record_attention is not None:  # what explain listens with
        modes["TraceRecorder + attention maps"] = lambda: recorder(True)
    times: dict[str, list[float]] = {m: [] for m in modes}
    images = {}
    for r in range(repeats + 1):  # r = 0 is the warm-up
        for mode, make in modes.items():
            on_event, patched = make()
            t = time.perf_counter()
            with torch.inference_mode():
                result = txt2img(model, params, on_event=on_event, unet=patched)
            if r > 0:
                times[mode].append(time.perf_counter() - t)
            images[mode] = result.images[0].tobytes()
    if len(set(images.values())) != 1:
        raise SystemExit("the listeners changed the image")
    out = {m: {"median_s": _median(ts), "runs_s": ts} for m, ts in times.items()}
    base = out["on_event=None"]["median_s"]
    for m in out:
        out[m]["vs_none"] = out[m]["median_s"] / base
    return out


def _summary(times: dict[str, list[float]], top: str, bottom: str) -> dict:
    out = {k: {"median_s": _median(v), "min_s": min(v), "runs_s": v} for k, v in times.items()}
    out["ratio"] = out[top]["median_s"] / out[bottom]["median_s"]
    return out


def machine() -> dict:
    import torch

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()[0]}  # fmt: skip


def markdown(report: dict) -> str:
    s, c, p, lis = report["settings"], report["cli"], report["in_process"], report["listeners"]
    ok = "✓" if p["ratio"] <= GOAL else "✗"
    lines = [
        f"embedded model, {s['size']}, {s['steps']} steps, {s['sampler']}, CFG {s['cfg']}, seed {s['seed']}; "
        f"torch threads: {s['threads']}; median of {s['repeats']} runs",
        "",
        "| measurement | generate s | explain s | explain / generate | goal |",
        "|---|---:|---:|---:|---:|",
        f"| in-process, model loaded once (the generation's own cost) | {p['generate']['median_s']:.3f} | "
        f"{p['explain']['median_s']:.3f} | {p['ratio']:.2f} | ≤ {GOAL:g} {ok} |",
        f"| whole command, fresh process each (start + load + run) | {c['generate']['median_s']:.2f} | "
        f"{c['explain']['median_s']:.2f} | {c['ratio']:.2f} | |",
        "",
        "| txt2img listener | median s | vs on_event=None |",
        "|---|---:|---:|",
    ]
    for mode, r in lis.items():
        lines.append(f"| {mode} | {r['median_s']:.3f} | {r['vs_none']:.3f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5, help="measured runs per command (default: 5)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in every run (default: torch's own choice, one per core); on a shared "
                   "machine use 1: with 2 threads on 2 cores, another busy process stalls every parallel "
                   "region (measured 10-40× slower)")  # fmt: skip
    p.add_argument("--skip-cli", action="store_true", help="leave out the fresh-process measurement")
    p.add_argument("--json", type=Path, default=None, help="write the report here (default: print only)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = {
        "machine": machine(),
        "settings": {
            "model": "glassforge-shapes (embedded)",
            "size": "32×32",
            "steps": args.steps,
            "sampler": "DPM++ 2M",
            "cfg": 7.0,
            "seed": SEED,
            "prompt": PROMPT,
            "repeats": args.repeats,
            "precision": "auto",
            "threads": args.threads or "torch default",
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as tmp:
        work = Path(tmp)
        print("listeners …", file=sys.stderr)
        report["listeners"] = bench_listeners(args.steps, max(args.repeats, 5))
        print("in-process …", file=sys.stderr)
        report["in_process"] = bench_in_process(args.steps, args.repeats, work)
        if not args.skip_cli:
            print("fresh processes …", file=sys.stderr)
            report["cli"] = bench_cli(args.steps, args.repeats, work, args.threads)
    report["machine"]["load_average_at_end"] = os.getloadavg()[0]
    report.setdefault("cli", {"generate": {"median_s": float("nan")}, "explain": {"median_s": float("nan")},
                              "ratio": float("nan")})  # fmt: skip
    report["checks"] = {"explain_vs_generate": report["in_process"]["ratio"], "goal": GOAL}
    text = markdown(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**report, "markdown": text}, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
