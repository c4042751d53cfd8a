"""``glassforge run`` (workflows, ``--set``, ``--sweep`` grids) and ``glassforge nodes``.

``run`` takes an API-format workflow: a JSON file (also a ``POST /prompt`` body ``{"prompt": {...}}``) or
an image whose ``prompt`` text chunk holds one (ComfyUI's and our SaveImage's PNGs; read as text, never
unpickled). Validation happens before anything runs; progress goes to stderr, saved paths (or, with
``--events``, one JSON message per line) to stdout. Sweeps run every combination through one executor,
so its cache re-executes only what a changed value feeds. Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .grid import MAX_AXES
from .grid import value_text as _value_text


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a ComfyUI API-format workflow (.json, or a PNG that carries one); --sweep makes grids",
        description="Run an API-format workflow (ComfyUI's 'Export (API)', a POST /prompt body, or an image "
        "whose 'prompt' chunk holds one). Progress on stderr; saved image paths on stdout.",
    )
    p.add_argument("workflow", metavar="WORKFLOW", help="workflow .json, or an image saved with its workflow")
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="NODE.INPUT=VALUE",
                   help="set a constant: NODE is a node id, its _meta.title or its class name (if unique); "
                   "VALUE is JSON when it parses (5, 7.5, true), else text (repeatable)")  # fmt: skip
    p.add_argument("--sweep", action="append", default=[], metavar="NODE.INPUT=V1,V2,...",
                   help="run once per value (comma-separated, or a JSON list); several --sweep run every "
                   "combination: 1st = grid columns, 2nd = rows, 3rd = blocks stacked top to bottom")  # fmt: skip
    p.add_argument("--grid", metavar="OUT.png", help="with --sweep: write a labelled grid of the first image of "
                   "each run")  # fmt: skip
    p.add_argument("--events", action="store_true", help="print the event stream on stdout, one JSON message "
                   "per line (ComfyUI's websocket vocabulary)")  # fmt: skip
    p.add_argument("--out", default="outputs", help="output folder of SaveImage (default: ./outputs)")
    p.add_argument("--input-dir", default="inputs", help="folder LoadImage reads from (default: ./inputs)")
    p.add_argument(
        "--models-dir", action="append", default=[], help="extra folder to look up checkpoint names"
    )
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.set_defaults(func=run_command)

    p = sub.add_parser("nodes", help="list the workflow nodes, or show one node's inputs and outputs")
    p.add_argument("name", nargs="?", help="a node class (or display name) to show in full")
    p.add_argument(
        "--json", action="store_true", help="print /object_info's JSON (of NAME, or of every node)"
    )
    p.add_argument("--markdown", action="store_true", help="print the node catalogue (docs/workflows.md)")
    p.add_argument(
        "--update", metavar="FILE.md", help="with --markdown: rewrite FILE's generated node section"
    )
    p.add_argument(
        "--models-dir", action="append", default=[], help="extra folder to look up checkpoint names"
    )
    p.set_defaults(func=nodes_command)


# ---------------------------------------------------------------- workflows in, values set


def load_workflow(source: str | os.PathLike) -> tuple[dict, dict]:
    """(workflow, extra_data) from a JSON file or an image's ``prompt`` text chunk."""
    path = Path(source)
    raw = path.read_bytes()
    if raw[:8] == b"\x89PNG\r\n\x1a\n" or raw[:4] == b"RIFF" or raw[:2] == b"\xff\xd8":
        from PIL import Image

        with Image.open(path) as img:
            texts = dict(
                getattr(img, "text", None) or {k: v for k, v in img.info.items() if isinstance(v, str)}
            )
        if "prompt" not in texts:
            has = "only A1111's 'parameters' infotext" if "parameters" in texts else "no text chunks"
            raise ValueError(f"{path} holds {has}, no workflow: images saved by SaveImage (glassforge run, "
                             "ComfyUI) carry one in a 'prompt' chunk")  # fmt: skip
        where = f"{path}'s 'prompt' chunk"
        prompt, _ = _unwrap(_parse_json(texts["prompt"], where), where)
        try:  # keep ComfyUI's UI graph in the images this run saves
            extra = (
                {"extra_pnginfo": {"workflow": json.loads(texts["workflow"])}} if "workflow" in texts else {}
            )
        except ValueError:
            extra = {}
        return prompt, extra
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is neither a JSON workflow nor a PNG with one") from None
    return _unwrap(_parse_json(text, str(path)), str(path))


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from None


def _unwrap(data: Any, where: str) -> tuple[dict, dict]:
    extra: dict = {}
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        extra = data.get("extra_data") if isinstance(data.get("extra_data"), dict) else {}
        data = data["prompt"]  # a POST /prompt body
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise ValueError(f"{where} is ComfyUI's UI format (the editor's save file); export the workflow with "
                         "'Export (API)' (or save an image: its 'prompt' chunk is the API format)")  # fmt: skip
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{where}: expected an API-format workflow, an object of node id → "
                         '{"class_type": ..., "inputs": {...}}')  # fmt: skip
    return data, extra


@dataclass(frozen=True)
class Target:
    node_id: str
    name: str
    input: Any  # the schema's Input, or None for an unknown class (validation reports it)

    @property
    def label(self) -> str:
        return f"#{self.node_id}.{self.name}"


def find_node(prompt: dict, ref: str) -> str:
    """A node id from an id, a ``_meta.title`` or a class name that only one node has."""
    if ref in prompt:
        return ref
    nodes = {k: v for k, v in prompt.items() if isinstance(v, dict)}
    for what, key in (("titled", lambda v: (v.get("_meta") or {}).get("title")), ("of class", lambda v: v.get("class_type"))):  # fmt: skip
        hits = [k for k, v in nodes.items() if key(v) == ref]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(
                f"{len(hits)} nodes are {what} {ref!r} ({', '.join('#' + h for h in hits)}); use a node id"
            )
    known = ", ".join(f"#{k} {v.get('class_type')}" for k, v in nodes.items())
    raise ValueError(f"no node {ref!r} in the workflow (nodes: {known})")


def resolve_target(prompt: dict, registry, spec: str, option: str) -> tuple[Target, str]:
    """``NODE.INPUT=VALUE`` → (the constant input it names, the value text)."""
    from .schema import LINK_TYPES
    from .validate import is_link

    where, eq, value = spec.partition("=")
    ref, dot, name = where.strip().rpartition(".")
    if not eq or not dot or not ref or not name:
        raise ValueError(f"{option} {spec!r}: expected NODE.INPUT=VALUE, e.g. 3.seed=5 or KSampler.steps=4")
    try:
        node_id = find_node(prompt, ref)
    except ValueError as err:
        raise ValueError(f"{option} {spec!r}: {err}") from None
    node = prompt[node_id]
    given = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
    nc = registry.get(node.get("class_type"))
    inp = nc.schema.input(name) if nc is not None else None
    if is_link(given.get(name)):
        src = given[name]
        raise ValueError(f"{option} {spec!r}: input {name!r} of node #{node_id} is a link from node {src[0]} "
                         f"output {src[1]}; only constants can be set")  # fmt: skip
    if nc is not None and inp is None:
        constants = [i.name for i in nc.schema.inputs if i.type not in LINK_TYPES]
        raise ValueError(f"{option} {spec!r}: node #{node_id} ({nc.name}) has no input {name!r}; its constants "
                         f"are {', '.join(constants) or 'none'}")  # fmt: skip
    if inp is not None and inp.type in LINK_TYPES:
        raise ValueError(
            f"{option} {spec!r}: {name!r} of node #{node_id} takes a link ({inp.type}), not a value"
        )
    return Target(node_id, name, inp), value


def parse_value(text: str, target: Target) -> Any:
    """Text for STRING and COMBO inputs (a JSON string literal is unquoted); JSON when it parses, else text."""
    from .validate import is_link

    if target.input is not None and target.input.type in ("STRING", "COMBO") and not text.startswith('"'):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if is_link(value) or isinstance(value, dict):
        raise ValueError(f"{target.label}: {text!r} is not a constant (links cannot be set)")
    return value


def sweep_values(text: str, target: Target) -> list:
    """``v1,v2,...`` (each parsed as by --set) or a JSON list (for values that contain commas)."""
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except ValueError as err:
            raise ValueError(f"--sweep {target.label}: {text!r} is not a JSON list: {err}") from None
        if not isinstance(values, list) or not values:
            raise ValueError(f"--sweep {target.label}: expected a non-empty JSON list of values")
        return [parse_value(v, target) if isinstance(v, str) else v for v in values]
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(p == "" for p in parts):
        raise ValueError(
            f"--sweep {target.label}: empty value in {text!r}; expected v1,v2,... or a JSON list"
        )
    return [parse_value(p, target) for p in parts]


def with_values(prompt: dict, values: list[tuple[Target, Any]]) -> dict:
    """A copy of ``prompt`` with the given constants set."""
    out = json.loads(json.dumps(prompt))
    for target, value in values:
        node = out[target.node_id]
        if not isinstance(node.get("inputs"), dict):
            node["inputs"] = {}
        node["inputs"][target.name] = value
    return out


# ---------------------------------------------------------------- running


def _node_key(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _progress(prompt: dict, stream=None):
    """Events → one stderr line per node ('#3 KSampler  step 4/4  0.8s') and 'cached: #4 #6' lines;
    redrawn in place on a terminal, else each line once when its node ends."""
    stream = stream or sys.stderr
    live = stream.isatty()
    state: dict[str, Any] = {"node": None, "line": "", "start": 0.0}

    def label(node_id: str) -> str:
        return f"#{node_id} {(prompt.get(node_id) or {}).get('class_type', '?')}"

    def finish() -> None:
        if state["node"] is not None:
            took = time.perf_counter() - state["start"]
            stream.write(("\r" if live else "") + f"{state['line']}  {took:.1f}s\n")
            stream.flush()
            state["node"] = None

    def on_event(event) -> None:
        kind = getattr(event, "type", None)
        if kind == "execution_cached" and event.nodes:
            stream.write("cached: " + " ".join(f"#{n}" for n in sorted(event.nodes, key=_node_key)) + "\n")
        elif kind == "executing":
            finish()
            if event.node is not None:
                state.update(node=event.node, line=label(event.node), start=time.perf_counter())
        elif kind == "progress" and event.node == state["node"]:
            state["line"] = f"{label(event.node)}  step {event.value}/{event.max}"
        else:
            return
        if live and state["node"] is not None:
            stream.write("\r" + state["line"])
            stream.flush()

    return on_event


def _event_printer(stream=None):
    stream = stream or sys.stdout

    def on_event(event) -> None:
        if getattr(event, "type", None) == "preview" or not hasattr(event, "message"):
            return  # sampling-internal events (SamplerStep, ModelCall) and preview pictures
        stream.write(json.dumps(event.message(), ensure_ascii=False, default=str) + "\n")
        stream.flush()

    return on_event


def _images(result) -> list[dict]:
    return [img for node_id in sorted(result.outputs, key=_node_key) for img in result.outputs[node_id].get("images", [])]  # fmt: skip


def run_command(args: argparse.Namespace) -> int:
    import itertools

    from .nodes import core_nodes
    from .validate import WorkflowError

    prompt, extra = load_workflow(args.workflow)
    registry = core_nodes()
    errors, sets = [], []
    for spec in args.sets:
        try:
            target, text = resolve_target(prompt, registry, spec, "--set")
            sets.append((target, parse_value(text, target)))
        except ValueError as err:
            errors.append(str(err))
    axes: list[tuple[Target, list]] = []
    for spec in args.sweep:
        try:
            target, text = resolve_target(prompt, registry, spec, "--sweep")
            axes.append((target, sweep_values(text, target)))
        except ValueError as err:
            errors.append(str(err))
    if errors:
        raise ValueError("\n".join(errors))
    if len(axes) > MAX_AXES:
        raise ValueError(f"at most {MAX_AXES} --sweep axes (grid columns, rows, blocks); got {len(axes)}")
    if args.grid and not axes:
        raise ValueError("--grid needs at least one --sweep NODE.INPUT=V1,V2,...")
    names = [t.name for t, _ in axes]
    titles = [t.name if names.count(t.name) == 1 else t.label for t, _ in axes]
    # index tuples in reading order: the last axis slowest, the first (columns) fastest
    ranges = [range(len(values)) for _, values in reversed(axes)]
    combos = [tuple(reversed(c)) for c in itertools.product(*ranges)]
    base = with_values(prompt, sets)
    runs = [(combo, with_values(base, [(t, vals[i]) for (t, vals), i in zip(axes, combo, strict=True)]))
            for combo in combos]  # fmt: skip
    shown = [(title, values) for title, (_, values) in zip(titles, axes, strict=True)]

    env = _graph_env(args)
    from .executor import Executor

    executor = Executor(registry, env)  # LRU: the loader and encoders, used by every run, stay cached
    problems: dict[str, str] = {}  # every distinct validation failure, before anything runs
    for combo, workflow in runs:
        try:
            executor.validate(workflow)
        except WorkflowError as err:
            where = ", ".join(f"{t}={_value_text(v[i])}" for (t, v), i in zip(shown, combo, strict=True))
            problems.setdefault(err.describe(), where)
    if problems:
        print(f"glassforge run: {args.workflow} is not a valid workflow", file=sys.stderr)
        for text, where in problems.items():
            print((f"with {where}:\n" if where else "") + text, file=sys.stderr)
        return 2
    return _execute(args, executor, runs, shown, extra)


def _graph_env(args: argparse.Namespace):
    from ..models.locate import model_folders
    from ..models.manager import ModelManager
    from ..models.runtime import resolve_runtime
    from .env import GraphEnv

    runtime = resolve_runtime(args.device, args.precision)
    models = ModelManager(folders=model_folders(getattr(args, "models_dir", [])), runtime=runtime)
    return GraphEnv(models=models, output_dir=Path(args.out), input_dir=Path(args.input_dir))


def _execute(args, executor, runs, axes, extra) -> int:
    import signal
    import threading

    import torch

    interrupt = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():  # Ctrl-C stops between steps, cleanly
        previous = signal.signal(signal.SIGINT, lambda *_: interrupt.set())
    printer = _event_printer() if args.events else None
    cells: dict[tuple, Any] = {}
    try:
        for k, (combo, workflow) in enumerate(runs):
            if axes:
                where = " · ".join(f"{t}: {_value_text(v[i])}" for (t, v), i in zip(axes, combo, strict=True))
                print(f"[{k + 1}/{len(runs)}] {where}", file=sys.stderr)
            progress = _progress(workflow)
            failure: list = []

            def on_event(event, progress=progress, failure=failure) -> None:
                progress(event)
                if printer is not None:
                    printer(event)
                if getattr(event, "type", None) == "execution_error":
                    failure.append(event)

            with torch.inference_mode():
                result = executor.run(workflow, extra_data=extra, on_event=on_event, interrupt=interrupt)
            if result.status == "interrupted":
                print("glassforge run: interrupted", file=sys.stderr)
                return 130
            if result.status != "success":
                err = failure[0] if failure else None
                where = f"node #{err.node_id} ({err.node_type})" if err else "a node"
                message = f"{err.exception_type}: {err.exception_message}" if err else result.error
                print(f"glassforge run: {where} failed: {message}", file=sys.stderr)
                if err and os.environ.get("GLASSFORGE_DEBUG"):
                    print("".join(err.traceback), file=sys.stderr)
                return 1
            images = _images(result)
            if axes:
                ran = " ".join(f"#{n}" for n in result.executed) or "nothing"
                print(f"ran: {ran}", file=sys.stderr)
            for image in images:
                if image.get("type") == "output" and not args.events:
                    print(image["path"])
            if args.grid:
                if not images:
                    raise ValueError(
                        "--grid needs a workflow that saves or previews images (SaveImage, PreviewImage)"
                    )
                cells[combo] = _read_image(images[0]["path"])
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if args.grid:
        from .grid import make_grid

        grid, _ = make_grid(cells, axes)
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        grid.save(args.grid)
        print(f"grid {grid.width}×{grid.height}: {args.grid}", file=sys.stderr)
        if not args.events:
            print(args.grid)
    return 0


def _read_image(path: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


# ---------------------------------------------------------------- nodes


def nodes_command(args: argparse.Namespace) -> int:
    from . import catalog
    from .nodes import core_nodes

    registry = core_nodes()
    if args.markdown:
        if args.update:
            catalog.update_document(args.update, registry)
            print(f"updated {args.update}", file=sys.stderr)
        else:
            print(catalog.nodes_markdown(registry), end="")
        return 0
    env = _nodes_env(args) if (args.json or args.name) else None
    if args.name:
        name = _find_class(registry, args.name)
        if args.json:
            print(json.dumps({name: registry[name].schema.object_info(env)}, indent=2, ensure_ascii=False))
        else:
            print(catalog.schema_text(registry[name].schema, env))
        return 0
    if args.json:
        print(json.dumps(registry.object_info(env), indent=2, ensure_ascii=False))
        return 0
    import textwrap

    width = max(len(n) for n in registry)
    for category, schemas in catalog.categories(registry).items():
        print(category)
        for s in schemas:
            shown = "" if s.display_name == s.name else f"“{s.display_name}” "
            text = textwrap.fill(shown + (s.role or s.description), 110, initial_indent=" " * (width + 4),
                                 subsequent_indent=" " * (width + 4))  # fmt: skip
            print(f"  {s.name:<{width}}" + text[width + 2 :])
    return 0


def _nodes_env(args: argparse.Namespace):
    from ..models.locate import model_folders
    from ..models.manager import ModelManager
    from .env import GraphEnv

    return GraphEnv(models=ModelManager(folders=model_folders(args.models_dir)))


def _find_class(registry, name: str) -> str:
    if name in registry:
        return name
    folded = {n.lower(): n for n in registry} | {registry[n].schema.display_name.lower(): n for n in registry}
    if name.lower() in folded:
        return folded[name.lower()]
    import difflib

    close = difflib.get_close_matches(name.lower(), list(folded), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(folded[c] for c in close)}?" if close else "; see 'glassforge nodes'"
    raise LookupError(f"no node class {name!r}{hint}")
