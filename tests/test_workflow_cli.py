"""``glassforge run`` and ``glassforge nodes``: ComfyUI's default workflow on the embedded model, workflows in
PNGs, --set, validation errors, the event stream, sweeps through the cache, grids, the generated node list."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glassforge.cli import main
from glassforge.graph.catalog import generated_section, nodes_markdown
from glassforge.graph.cli import Target, load_workflow, sweep_values
from glassforge.graph.grid import GAP, make_grid
from glassforge.graph.nodes import core_nodes
from glassforge.infotext import parse_generation_parameters

DOCS = Path(__file__).resolve().parent.parent / "docs"

# ComfyUI's script_examples/basic_api_example.py (shared/reference/comfyui.md §3.1, values verbatim) with the
# checkpoint pointed at the embedded model, and the frontend's _meta titles (§3.2)
DEFAULT = {
    "3": {"class_type": "KSampler", "_meta": {"title": "KSampler"},
          "inputs": {"cfg": 8, "denoise": 1, "latent_image": ["5", 0], "model": ["4", 0], "negative": ["7", 0],
                     "positive": ["6", 0], "sampler_name": "euler", "scheduler": "normal", "seed": 8566257,
                     "steps": 20}},
    "4": {"class_type": "CheckpointLoaderSimple", "_meta": {"title": "Load Checkpoint"},
          "inputs": {"ckpt_name": "glassforge-shapes.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "_meta": {"title": "Empty Latent Image"},
          "inputs": {"batch_size": 1, "height": 512, "width": 512}},
    "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Prompt)"},
          "inputs": {"clip": ["4", 1], "text": "masterpiece best quality girl"}},
    "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Prompt)"},
          "inputs": {"clip": ["4", 1], "text": "bad hands"}},
    "8": {"class_type": "VAEDecode", "_meta": {"title": "VAE Decode"},
          "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "_meta": {"title": "Save Image"},
          "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}  # fmt: skip
SMALL = ["--set", "5.width=32", "--set", "Empty Latent Image.height=32", "--set", "KSampler.steps=3"]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    code, out, err = run_cli(
        "run", write_json(folder / "default.json", DEFAULT), *SMALL, "--out", folder / "out"
    )
    return folder, code, out, err


def test_default_workflow_runs_and_saves_its_workflow_and_infotext(first_run):
    folder, code, out, err = first_run
    assert code == 0, err
    assert out.splitlines() == [str((folder / "out" / "ComfyUI_00001_.png").resolve())]
    # one stderr line per node, in dependency order, the sampler with its steps
    lines = err.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "#5 EmptyLatentImage", "#4 CheckpointLoaderSimple", "#7 CLIPTextEncode", "#6 CLIPTextEncode",
        "#3 KSampler", "#8 VAEDecode", "#9 SaveImage",
    ]  # fmt: skip
    assert lines[4].startswith("#3 KSampler  step 3/3  ")
    with Image.open(out.strip()) as img:
        assert img.size == (32, 32)
        saved = json.loads(img.text["prompt"])
        infotext = img.text["parameters"]
    # --set by id (5.width), by _meta.title (Empty Latent Image.height) and by class (KSampler.steps)
    expected = json.loads(json.dumps(DEFAULT))
    expected["5"]["inputs"].update(width=32, height=32)
    expected["3"]["inputs"]["steps"] = 3
    assert saved == expected
    params = parse_generation_parameters(infotext)
    assert (params["Prompt"], params["Negative prompt"]) == ("masterpiece best quality girl", "bad hands")
    assert (params["Steps"], params["Sampler"], params["Seed"], params["CFG scale"]) == (
        "3",
        "Euler",
        "8566257",
        "8",
    )
    assert (params["Size-1"], params["Size-2"], params["Model"]) == ("32", "32", "glassforge-shapes")


def test_rerunning_the_png_gives_identical_pixels_and_the_event_stream_in_order(first_run, tmp_path):
    _, code, out, _ = first_run
    assert code == 0
    png = out.strip()
    code, events_out, err = run_cli("run", png, "--events", "--out", tmp_path)
    assert code == 0, err
    messages = [json.loads(line) for line in events_out.splitlines()]
    kinds = [m["type"] for m in messages]
    assert kinds[:2] == ["execution_start", "execution_cached"]
    assert kinds[-2:] == ["execution_success", "executing"] and messages[-1]["data"]["node"] is None
    ran = [m["data"]["node"] for m in messages[:-1] if m["type"] == "executing"]
    assert ran == ["5", "4", "7", "6", "3", "8", "9"]
    steps = [
        (m["data"]["node"], m["data"]["value"], m["data"]["max"]) for m in messages if m["type"] == "progress"
    ]
    assert steps == [("3", 1, 3), ("3", 2, 3), ("3", 3, 3)]
    first = kinds.index
    assert first("executing") < first("progress") < first("executed") < first("execution_success")
    (executed,) = [m for m in messages if m["type"] == "executed"]
    assert executed["data"]["node"] == "9"
    again = executed["data"]["output"]["images"][0]["path"]
    assert Path(again).parent == tmp_path.resolve()
    assert np.array_equal(pixels(again), pixels(png))
    with Image.open(again) as a, Image.open(png) as b:
        assert a.text["prompt"] == b.text["prompt"]


def test_validation_lists_every_error_before_anything_runs(tmp_path):
    wf = write_json(tmp_path / "wf.json", DEFAULT)
    code, out, err = run_cli(
        "run", wf, "--set", "3.steps=0", "--set", "3.sampler_name=eulr", "--set", "5.width=33",
        "--set", "4.ckpt_name=v1-5-pruned-emaonly.safetensors", "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 2 and out == ""
    assert "node 3 (KSampler) input 'steps': Value 0 smaller than min of 1" in err
    assert "node 3 (KSampler) input 'sampler_name': Value not in list" in err
    assert "node 4 (CheckpointLoaderSimple) input 'ckpt_name': Value not in list" in err
    assert "node 5 (EmptyLatentImage)" in err and "multiples of 8" in err
    assert not (tmp_path / "out").exists()


def test_set_refuses_links_unknown_inputs_and_ambiguous_titles(tmp_path):
    wf = write_json(tmp_path / "wf.json", DEFAULT)
    code, _, err = run_cli(
        "run", wf, "--set", "3.model=5", "--set", "3.sede=1", "--set", "CLIP Text Encode (Prompt).text=x",
        "--set", "3.seed", "--set", "KSampler.seed=[\"4\", 0]",
    )  # fmt: skip
    assert code == 2
    assert "input 'model' of node #3 is a link from node 4 output 0; only constants can be set" in err
    assert "node #3 (KSampler) has no input 'sede'; its constants are seed, steps" in err
    assert "2 nodes are titled 'CLIP Text Encode (Prompt)' (#6, #7); use a node id" in err
    assert "'3.seed': expected NODE.INPUT=VALUE" in err
    assert "is not a constant (links cannot be set)" in err


def test_an_execution_error_exits_1_naming_the_node(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "broken.png").write_bytes(b"not an image")
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    code, out, err = run_cli(
        "run", write_json(tmp_path / "wf.json", wf), "--input-dir", inputs, "--out", tmp_path
    )
    assert code == 1 and out == ""
    assert "glassforge run: node #1 (LoadImage) failed: UnidentifiedImageError" in err


def test_workflow_sources_a_post_body_the_ui_format_and_an_image_without_one(tmp_path):
    body = write_json(tmp_path / "body.json", {"prompt": DEFAULT, "client_id": "x", "extra_data": {"a": 1}})
    assert load_workflow(body) == (DEFAULT, {"a": 1})
    ui = write_json(tmp_path / "ui.json", {"nodes": [], "links": [], "version": 0.4})
    with pytest.raises(ValueError, match=r"UI format.*Export \(API\)"):
        load_workflow(ui)
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20")
    Image.new("RGB", (8, 8)).save(tmp_path / "a1111.png", pnginfo=info)
    with pytest.raises(ValueError, match="only A1111's 'parameters' infotext, no workflow"):
        load_workflow(tmp_path / "a1111.png")


def test_sweep_values_split_on_commas_or_take_a_json_list():
    registry = core_nodes()
    steps = Target("3", "steps", registry["KSampler"].schema.input("steps"))
    text = Target("6", "text", registry["CLIPTextEncode"].schema.input("text"))
    assert sweep_values("2, 4,8", steps) == [2, 4, 8]
    assert sweep_values("a cat, 3", text) == ["a cat", "3"]  # text inputs stay text
    assert sweep_values('["a red, round thing", "a cat"]', text) == ["a red, round thing", "a cat"]
    with pytest.raises(ValueError, match="empty value"):
        sweep_values("2,,4", steps)


def test_a_sweep_loads_the_model_and_encodes_the_prompts_once_and_writes_a_grid(tmp_path):
    wf = write_json(tmp_path / "wf.json", DEFAULT)
    grid_path = tmp_path / "grid.png"
    code, out, err = run_cli(
        "run", wf, "--set", "5.width=32", "--set", "5.height=32", "--sweep", "3.sampler_name=euler,heun",
        "--sweep", "KSampler.steps=2,3", "--grid", grid_path, "--events", "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    assert sum(m["type"] == "execution_start" for m in messages) == 4
    assert sum(m["type"] == "execution_success" for m in messages) == 4
    runs = [m["data"]["node"] for m in messages if m["type"] == "executing" and m["data"]["node"]]
    counts = {node: runs.count(node) for node in sorted(set(runs))}
    assert counts == {"3": 4, "4": 1, "5": 1, "6": 1, "7": 1, "8": 4, "9": 4}  # loader and encoders once
    cached = [m["data"]["nodes"] for m in messages if m["type"] == "execution_cached"]
    assert cached[0] == [] and all(sorted(c) == ["4", "5", "6", "7"] for c in cached[1:])
    assert "[1/4] sampler_name: euler · steps: 2" in err and "[4/4] sampler_name: heun · steps: 3" in err
    assert err.count("ran: #3 #8 #9") == 3
    # each saved image carries its own combination; the grid shows it at (column = sampler, row = steps)
    saved = [m["data"]["output"]["images"][0]["path"] for m in messages if m["type"] == "executed"]
    cells = {}
    for path in saved:
        with Image.open(path) as img:
            inputs = json.loads(img.text["prompt"])["3"]["inputs"]
        cells[(["euler", "heun"].index(inputs["sampler_name"]), [2, 3].index(inputs["steps"]))] = pixels(path)
    assert len(cells) == 4
    images = {k: Image.fromarray(v) for k, v in cells.items()}
    expected, layout = make_grid(images, [("sampler_name", ["euler", "heun"]), ("steps", [2, 3])])
    assert layout.cell == (128, 128) and layout.scale == 4  # 32 px images shown 4× (nearest neighbour)
    grid = pixels(grid_path)
    assert grid.shape[:2] == (layout.size[1], layout.size[0])
    assert layout.size == (layout.left + 2 * (128 + GAP), layout.top + 2 * (128 + GAP))
    for (c, r), cell in cells.items():
        x0, y0, x1, y1 = layout.box(c, r)
        assert np.array_equal(grid[y0:y1, x0:x1], cell.repeat(4, axis=0).repeat(4, axis=1))
    assert np.array_equal(grid, np.asarray(expected))


def test_a_third_sweep_axis_stacks_blocks():
    colours = {(c, r, b): Image.new("RGB", (16, 16), (40 * c, 80 * r, 120 * b)) for c in range(2) for r in range(1) for b in range(3)}  # fmt: skip
    axes = [("cfg", [5, 7]), ("steps", [4]), ("seed", [1, 2, 3])]
    grid, layout = make_grid(colours, axes)
    assert (layout.cols, layout.rows, layout.blocks, layout.cell) == (2, 1, 3, (128, 128))
    assert grid.size == layout.size and layout.block_header > 0
    assert layout.size[1] == 3 * (layout.block_header + layout.top + 128 + GAP)
    for (c, r, b), img in colours.items():
        x0, y0, *_ = layout.box(c, r, b)
        assert grid.getpixel((x0 + 5, y0 + 5)) == img.getpixel((0, 0))


def test_nodes_lists_every_class_by_category_and_shows_a_schema():
    registry = core_nodes()
    code, out, _ = run_cli("nodes")
    assert code == 0
    listed = [
        line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")
    ]
    assert sorted(listed) == sorted(registry)
    assert "sampling\n  KSampler " in out
    code, out, _ = run_cli("nodes", "ksampler")
    assert code == 0 and out.startswith("KSampler — KSampler  (category sampling)")
    assert "sampler_name" in out and "more)" in out  # the long choice list is cut
    assert "seed                  INT           noise seed. default 0; 0 … 18446744073709551615" in out
    code, _, err = run_cli("nodes", "KSamplr")
    assert code == 2 and "did you mean KSampler" in err


def test_nodes_json_is_object_info():
    code, out, _ = run_cli("nodes", "--json")
    info = json.loads(out)
    assert code == 0 and list(info) == list(core_nodes())
    ksampler = info["KSampler"]
    assert ksampler["input"]["required"]["steps"] == ["INT", {"default": 20, "min": 1, "max": 10000,
                                                              "tooltip": "number of sampler steps"}]  # fmt: skip
    assert ksampler["output"] == ["LATENT"] and ksampler["category"] == "sampling"
    assert (
        "glassforge-shapes.safetensors" in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    )
    code, out, _ = run_cli("nodes", "SaveImage", "--json")
    assert list(json.loads(out)) == ["SaveImage"]


def test_docs_workflows_md_node_list_is_generated_from_the_registry():
    # regenerate with: glassforge nodes --markdown --update docs/workflows.md
    assert generated_section((DOCS / "workflows.md").read_text()) == nodes_markdown()
