"""The ComfyUI-compatible API end to end: a real server on a loopback port (uvicorn in a thread, the
embedded model in fp32), driven by ComfyUI's real client (``comfy-api-simplified``), raw websockets and
httpx.

Oracles: the image the client fetches is the file the server saved and has the pixels ``txt2img()``
makes with the ComfyUI convention; the preview frames are the sampler's x0 previews in step order;
event order, history entries, errors and node definitions are ComfyUI 0.3.64's (reference/comfyui.md).
"""

from __future__ import annotations

import copy
import io
import json
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from live_server import live_server

comfy_api = pytest.importorskip("comfy_api_simplified")
ws_sync = pytest.importorskip("websockets.sync.client")

EMBEDDED = "glassforge-shapes.safetensors"
PROMPT = "a red circle on a blue background"
STEPS = 6
# The default graph as frontend 1.27.10 exports it in API format (reference §3.2, `_meta` titles, which
# comfy-api-simplified looks nodes up by), with the embedded checkpoint, 32 px and 6 steps.
DEFAULT = {
    "3": {"inputs": {"seed": 156680208700286, "steps": STEPS, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
                     "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                     "latent_image": ["5", 0]}, "class_type": "KSampler", "_meta": {"title": "KSampler"}},
    "4": {"inputs": {"ckpt_name": EMBEDDED}, "class_type": "CheckpointLoaderSimple", "_meta": {"title": "Load Checkpoint"}},
    "5": {"inputs": {"width": 32, "height": 32, "batch_size": 1}, "class_type": "EmptyLatentImage",
          "_meta": {"title": "Empty Latent Image"}},
    "6": {"inputs": {"text": PROMPT, "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
          "_meta": {"title": "CLIP Text Encode (Prompt)"}},
    "7": {"inputs": {"text": "text, watermark", "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
          "_meta": {"title": "CLIP Text Encode (Prompt)"}},
    "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode", "_meta": {"title": "VAE Decode"}},
    "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage",
          "_meta": {"title": "Save Image"}},
}  # fmt: skip


def workflow(seed: int, text: str = PROMPT, steps: int = STEPS) -> dict:
    wf = copy.deepcopy(DEFAULT)
    wf["3"]["inputs"].update(seed=seed, steps=steps)
    wf["6"]["inputs"]["text"] = text
    return wf


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with (
        live_server(tmp_path_factory.mktemp("comfy-server")) as srv,
        httpx.Client(base_url=srv.base, timeout=300) as client,
    ):
        yield SimpleNamespace(port=srv.port, app=srv.app, state=srv.state, comfy=srv.app.state.comfy,
                              http=client, data=srv.data)  # fmt: skip


@pytest.fixture(scope="module")
def api(server):
    return comfy_api.ComfyApiWrapper(f"http://127.0.0.1:{server.port}")


@pytest.fixture
def no_previews(server):
    """The server as ComfyUI 0.3.64 starts by default (--preview-method none): no binary frames."""
    server.comfy.preview_method = "none"
    yield
    server.comfy.preview_method = "auto"


@pytest.fixture
def gate(server):
    """Holds the worker with a job of its own until ``gate.set()``, so prompts queue behind it."""
    event = threading.Event()
    from glassforge.server.jobs import Job

    job = server.state.queue.submit(Job(kind="test-gate", params={}, run=lambda job: event.wait(120)))
    wait_for(lambda: server.state.queue.current is job, "the gate job to run")
    yield event
    event.set()


def wait_for(condition, what: str, seconds: float = 120):
    for _ in range(int(seconds * 20)):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def reference_pixels(server, seed: int, steps: int = STEPS) -> np.ndarray:
    from glassforge.txt2img import Txt2ImgParams, txt2img

    model = server.state.manager.get(EMBEDDED).model
    with torch.inference_mode():
        result = txt2img(model, Txt2ImgParams(PROMPT, "text, watermark", seed=seed, sampler="euler",
                         schedule="normal", steps=steps, cfg_scale=8, width=32, height=32, convention="comfyui"))  # fmt: skip
    return np.asarray(result.images[0])


@contextmanager
def listen(server, client_id: str, flags: dict | None = None):
    with ws_sync.connect(f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}", max_size=None) as ws:
        if flags is not None:
            ws.send(json.dumps({"type": "feature_flags", "data": flags}))
        yield ws


def until_done(ws, prompt_id: str, on_message=None) -> list:
    """Messages (dicts, and bytes for binary frames) up to and including executing null of prompt_id,
    plus the status that follows it."""
    out = []
    while True:
        raw = ws.recv(timeout=300)
        msg = raw if isinstance(raw, bytes) else json.loads(raw)
        out.append(msg)
        if on_message is not None:
            on_message(msg)
        if isinstance(msg, dict) and msg["type"] == "executing" and msg["data"]["node"] is None \
                and msg["data"]["prompt_id"] == prompt_id:  # fmt: skip
            out.append(json.loads(ws.recv(timeout=60)))  # the queue changed: status
            return out


def types(messages) -> list[str]:
    return ["binary" if isinstance(m, bytes) else m["type"] for m in messages]


def of_type(messages, kind: str) -> list[dict]:
    return [m["data"] for m in messages if isinstance(m, dict) and m["type"] == kind]


def post(server, prompt: dict, client_id: str) -> str:
    r = server.http.post("/prompt", json={"prompt": prompt, "client_id": client_id})
    assert r.status_code == 200, r.text
    return r.json()["prompt_id"]


# ---------------------------------------------------------------- the real client


def test_comfy_api_simplified_runs_the_default_workflow(server, api, no_previews, tmp_path):
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(DEFAULT))
    wf = comfy_api.ComfyWorkflowWrapper(str(path))
    wf.set_node_param("KSampler", "seed", 5)
    images = api.queue_and_wait_images(wf, "Save Image")
    ((name, data),) = images.items()
    assert name == "ComfyUI_00001_.png"
    assert data == (server.data / "outputs" / "comfyui" / name).read_bytes()
    image = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(image), reference_pixels(server, 5))
    assert json.loads(image.text["prompt"])["3"]["inputs"]["seed"] == 5
    assert api.get_queue() == {"queue_running": [], "queue_pending": []}
    assert api.get_embeddings() == []
    stats = api.get_system_stats()
    assert stats["system"]["required_frontend_version"] == "1.27.10" and stats["devices"][0]["type"] == "cpu"
    assert api.get_object_info("KSampler")["KSampler"]["output"] == ["LATENT"]
    row = server.state.history.search(kind="workflow", q="red circle")[0][0]
    assert row["status"] == "done" and row["seed"] == 5 and row["model"] == "glassforge-shapes"
    assert row["images"] == [str(server.data / "outputs" / "comfyui" / name)]
    assert (
        row["prompt"] == PROMPT and row["negative_prompt"] == "text, watermark" and row["sampler"] == "Euler"
    )


def test_comfy_api_simplified_collects_preview_frames(server, api, gate):
    """With previews on, the client keeps every binary frame (legacy type 1, as it sends no feature
    flags): one JPEG per sampler step, the x0 previews the sampler made, in order."""
    from glassforge.graph.env import GraphEnv
    from glassforge.graph.events import Preview
    from glassforge.graph.executor import Executor
    from glassforge.graph.nodes import core_nodes
    from glassforge.server.comfy_ws import preview_jpeg

    before = set(server.comfy.hub.clients())
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(api.queue_and_wait_images, workflow(seed=77), "Save Image")
        wait_for(lambda: set(server.comfy.hub.clients()) - before, "the client's websocket")
        gate.set()
        frames = future.result(timeout=300)
    env = GraphEnv(
        models=server.state.manager,
        output_dir=server.data / "ref",
        temp_dir=server.data / "ref",
        preview="rgb",
    )
    previews = []
    Executor(core_nodes(), env).run(
        workflow(seed=77), on_event=lambda e: previews.append(e) if isinstance(e, Preview) else None
    )
    assert list(frames.values()) == [preview_jpeg(p.image) for p in previews]
    side = 32 // server.state.manager.get(EMBEDDED).model.vae_downscale  # latent2rgb: one pixel per latent
    assert len(frames) == STEPS and Image.open(io.BytesIO(frames["0"])).size == (side, side)


# ---------------------------------------------------------------- the websocket, raw


def test_websocket_event_order_cache_and_previews(server):
    server.http.post("/free", json={"free_memory": True}).raise_for_status()
    with listen(server, "order-client", {"supports_preview_metadata": True}) as ws:
        hello = [json.loads(ws.recv(timeout=60)) for _ in range(2)]
        assert hello[0] == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "order-client"},
        }
        assert hello[1] == {
            "type": "feature_flags",
            "data": {"supports_preview_metadata": True, "max_upload_size": 104857600},
        }
        r = server.http.post("/prompt", json={"prompt": workflow(seed=1), "client_id": "order-client"})
        prompt_id = r.json()["prompt_id"]
        first = until_done(ws, prompt_id)
        kinds = types(first)
        assert kinds[:4] == ["status", "execution_start", "execution_cached", "executing"]
        assert first[0]["data"]["status"]["exec_info"]["queue_remaining"] == 1
        assert first[2]["data"]["nodes"] == [] and first[2]["data"]["prompt_id"] == prompt_id
        executing = [m["data"]["node"] for m in first if isinstance(m, dict) and m["type"] == "executing"]
        assert sorted(executing[:4]) == ["4", "5", "6", "7"]  # each after what it needs:
        assert executing.index("4") < min(executing.index("6"), executing.index("7"))
        assert executing[4:] == ["3", "8", "9", None]
        at = kinds.index("executing", kinds.index("executing") + 4)  # KSampler's
        assert kinds[at + 1 : at + 1 + 2 * STEPS] == ["progress", "binary"] * STEPS
        progress = [m["data"] for m in first if isinstance(m, dict) and m["type"] == "progress"]
        assert progress == [
            {"value": i, "max": STEPS, "prompt_id": prompt_id, "node": "3"} for i in range(1, STEPS + 1)
        ]
        frame = next(m for m in first if isinstance(m, bytes))
        kind, size = struct.unpack(">II", frame[:8])
        meta = json.loads(frame[8 : 8 + size])
        assert kind == 4 and meta == {"node_id": "3", "prompt_id": prompt_id, "display_node_id": "3",
                                      "parent_node_id": None, "real_node_id": "3", "image_type": "image/jpeg"}  # fmt: skip
        assert Image.open(io.BytesIO(frame[8 + size :])).format == "JPEG"
        assert kinds[-5:] == ["executing", "executed", "execution_success", "executing", "status"]
        executed = first[-4]["data"]
        assert executed["node"] == "9" and executed["output"]["images"][0]["type"] == "output"
        assert set(executed["output"]["images"][0]) == {"filename", "subfolder", "type"}  # no server paths
        assert first[-1]["data"]["status"]["exec_info"]["queue_remaining"] == 0

        second = until_done(ws, post(server, workflow(seed=2), "order-client"))
        cached = next(m for m in second if isinstance(m, dict) and m["type"] == "execution_cached")
        assert sorted(cached["data"]["nodes"]) == ["4", "5", "6", "7"]  # the loader, the latent, both prompts
        executing = [m["data"]["node"] for m in second if isinstance(m, dict) and m["type"] == "executing"]
        assert executing == ["3", "8", "9", None]


def test_interrupt_mid_sampling(server, monkeypatch):
    """POST /interrupt while the sampler is between steps: execution_interrupted from KSampler, the
    history says so, the database row is ``interrupted``, the next prompt runs."""
    reached, go = threading.Event(), threading.Event()
    on_step = server.state.metrics.on_step
    calls = []

    def pause_at_step_2(seconds):  # the worker stops here until the interrupt has been answered
        calls.append(seconds)
        if len(calls) == 2:
            reached.set()
            go.wait(120)
        on_step(seconds)

    monkeypatch.setattr(server.state.metrics, "on_step", pause_at_step_2)
    with listen(server, "interrupt-client") as ws:
        ws.recv(timeout=60)
        prompt_id = post(server, workflow(seed=3), "interrupt-client")
        assert reached.wait(120)
        other = server.http.post("/interrupt", json={"prompt_id": "another"})  # not this one: nothing happens
        assert other.status_code == 200
        assert server.http.post("/interrupt", json={"prompt_id": prompt_id}).status_code == 200
        go.set()
        messages = until_done(ws, prompt_id)
        assert [d["value"] for d in of_type(messages, "progress")] == [1, 2]
        (stop,) = of_type(messages, "execution_interrupted")
        assert stop["prompt_id"] == prompt_id and stop["node_id"] == "3" and stop["node_type"] == "KSampler"
        assert "execution_success" not in types(messages)
        entry = server.http.get(f"/history/{prompt_id}").json()[prompt_id]
        assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
        assert entry["status"]["messages"][-1][0] == "execution_interrupted" and entry["outputs"] == {}
        wait_for(lambda: server.state.history.get(prompt_id)["status"] == "interrupted", "the database row")
        monkeypatch.undo()
        assert (
            until_done(ws, post(server, workflow(seed=3), "interrupt-client"))[-3]["type"]
            == "execution_success"
        )


# ---------------------------------------------------------------- queue and history


def test_queue_tuples_front_delete_and_clear(server, gate):
    ids, numbers = [], []
    for seed, front in ((10, False), (11, False), (12, True)):
        r = server.http.post(
            "/api/prompt", json={"prompt": workflow(seed=seed), "client_id": "q", "front": front}
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["prompt_id"])
        numbers.append(r.json()["number"])
        assert r.json()["number"] < 0 if front else r.json()["number"] >= 0
    queue = server.http.get("/queue").json()
    assert queue["queue_running"] == []  # the gate job is not a workflow
    pending = queue["queue_pending"]
    assert [item[1] for item in pending] == [ids[2], ids[0], ids[1]]  # front went first
    number, prompt_id, prompt, extra, outputs = pending[1]
    assert (number, prompt_id, prompt, extra, outputs) == (
        numbers[0],
        ids[0],
        workflow(seed=10),
        {"client_id": "q"},
        ["9"],
    )
    assert server.http.get("/prompt").json() == {"exec_info": {"queue_remaining": 3}}
    assert server.http.post("/queue", json={"delete": [ids[0]]}).status_code == 200
    assert [item[1] for item in server.http.get("/queue").json()["queue_pending"]] == [ids[2], ids[1]]
    assert server.http.post("/api/queue", json={"clear": True}).status_code == 200
    assert server.http.get("/api/queue").json() == {"queue_running": [], "queue_pending": []}
    assert all(server.state.history.get(i)["status"] == "interrupted" for i in ids)
    assert all(server.http.get(f"/history/{i}").json() == {} for i in ids)  # never ran


def test_history_shapes(server):
    r = server.http.post("/prompt", json={"prompt": workflow(seed=20), "client_id": "h", "prompt_id": "hist-1",
                                          "extra_data": {"extra_pnginfo": {"workflow": {"nodes": []}}}})  # fmt: skip
    assert r.json() == {"prompt_id": "hist-1", "number": r.json()["number"], "node_errors": {}}
    wait_for(lambda: server.http.get("/history/hist-1").json(), "the history entry")
    entry = server.http.get("/api/history/hist-1").json()["hist-1"]
    assert entry["prompt"] == [r.json()["number"], "hist-1", workflow(seed=20),
                               {"extra_pnginfo": {"workflow": {"nodes": []}}, "client_id": "h"}, ["9"]]  # fmt: skip
    (image,) = entry["outputs"]["9"]["images"]
    assert image["type"] == "output" and image["subfolder"] == "" and image["filename"].startswith("ComfyUI_")
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert entry["meta"] == {
        "9": {"node_id": "9", "display_node": "9", "parent_node": None, "real_node_id": "9"}
    }
    view = server.http.get("/view", params={"filename": image["filename"], "subfolder": "", "type": "output"})
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert json.loads(Image.open(io.BytesIO(view.content)).text["workflow"]) == {"nodes": []}
    everything = server.http.get("/history").json()
    assert list(everything)[-1] == "hist-1" and list(server.http.get("/history?max_items=1").json()) == [
        "hist-1"
    ]
    assert server.http.get("/history/no-such-prompt").json() == {}
    assert server.http.post("/history", json={"delete": ["hist-1"]}).status_code == 200
    assert server.http.get("/history/hist-1").json() == {}
    assert server.state.history.get("hist-1")["kind"] == "workflow"  # the database keeps it
    assert server.state.queue.get("hist-1").result.values == {}  # finished jobs hold no tensors or models
    assert (
        server.http.post("/prompt", json={"prompt": workflow(seed=20), "prompt_id": "hist-1"}).status_code
        == 400
    )


# ---------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"filename": "../history.sqlite3"}, 400),
        ({"filename": "history.sqlite3", "subfolder": "../../.."}, 403),
        ({"filename": "passwd", "subfolder": "/etc"}, 403),
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": "x.png", "type": "models"}, 400),
        ({"filename": "missing.png"}, 404),
        (
            {"filename": "hosts", "subfolder": "..\\..\\..\\..\\etc"},
            404,
        ),  # a backslash is a name, not a step up
    ],
)
def test_view_refuses_traversal(server, params, status):
    r = server.http.get("/view", params=params)
    assert r.status_code == status, r.text
    assert "root:" not in r.text and r.json()["detail"]


def test_view_preview_and_channel(server):
    Image.new("RGBA", (8, 4), (10, 20, 30, 128)).save(server.data / "outputs" / "comfyui" / "rgba.png")
    webp = server.http.get("/view", params={"filename": "rgba.png", "preview": "webp;90"})
    assert webp.headers["content-type"] == "image/webp" and Image.open(io.BytesIO(webp.content)).size == (
        8,
        4,
    )
    rgb = server.http.get("/view", params={"filename": "rgba.png", "channel": "rgb"})
    assert Image.open(io.BytesIO(rgb.content)).mode == "RGB"
    alpha = Image.open(
        io.BytesIO(server.http.get("/view", params={"filename": "rgba.png", "channel": "a"}).content)
    )
    assert alpha.getpixel((0, 0)) == (0, 0, 0, 128)


def test_upload_image_dedupes_and_loads(server, api, tmp_path):
    red, blue = tmp_path / "up.png", tmp_path / "other" / "up.png"
    blue.parent.mkdir()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(red)
    Image.new("RGB", (16, 16), (0, 0, 255)).save(blue)
    assert api.upload_image(red, subfolder="sub") == {"name": "up.png", "subfolder": "sub", "type": "input"}
    assert api.upload_image(red, subfolder="sub") == {"name": "up.png", "subfolder": "sub", "type": "input"}
    assert api.upload_image(blue, subfolder="sub") == {
        "name": "up (1).png",
        "subfolder": "sub",
        "type": "input",
    }
    folder = server.data / "comfyui" / "input" / "sub"
    assert sorted(p.name for p in folder.iterdir()) == ["up (1).png", "up.png"]
    assert (folder / "up (1).png").read_bytes() == blue.read_bytes()
    r = server.http.post(
        "/upload/image", files={"image": ("up.png", blue.read_bytes())}, data={"overwrite": "true"}
    )
    assert r.json() == {"name": "up.png", "subfolder": "", "type": "input"}
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "up.png"}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "loaded"}}}  # fmt: skip
    prompt_id = server.http.post("/prompt", json={"prompt": wf}).json()["prompt_id"]
    wait_for(lambda: server.http.get(f"/history/{prompt_id}").json(), "the LoadImage workflow")
    (out,) = server.http.get(f"/history/{prompt_id}").json()[prompt_id]["outputs"]["2"]["images"]
    saved = server.http.get("/view", params={"filename": out["filename"], "type": "output"}).content
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(saved))), np.asarray(Image.open(blue)))
    bad = [({"image": ("x.png", b"not an image")}, {}, 400), ({"image": ("../x.png", red.read_bytes())}, {}, 400),
           ({"image": ("x.png", red.read_bytes())}, {"subfolder": "../.."}, 403),
           ({"image": ("x.png", red.read_bytes())}, {"type": "models"}, 400), ({"file": ("x.png", b"")}, {}, 400)]  # fmt: skip
    for files, data, status in bad:
        r = server.http.post("/upload/image", files=files, data=data)
        assert r.status_code == status, (files, data, r.text)
    assert server.http.post("/upload/image", json={"image": "x"}).status_code == 400
    assert not (server.data / "comfyui" / "x.png").exists()


# ---------------------------------------------------------------- node definitions


def test_object_info_has_comfyuis_shapes(server):
    info = server.http.get("/object_info").json()
    ks = info["KSampler"]
    assert ks["input_order"]["required"] == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler",
                                             "positive", "negative", "latent_image", "denoise"]  # fmt: skip
    seed = ks["input"]["required"]["seed"]
    assert seed[0] == "INT" and seed[1].items() >= {"default": 0, "min": 0, "max": 18446744073709551615,
                                                    "control_after_generate": True}.items()  # fmt: skip
    assert ks["input"]["required"]["steps"][1].items() >= {"default": 20, "min": 1, "max": 10000}.items()
    assert ks["input"]["required"]["cfg"][1].items() >= {"default": 8.0, "min": 0.0, "max": 100.0}.items()
    assert ks["input"]["required"]["sampler_name"][0][:3] == ["euler", "euler_cfg_pp", "euler_ancestral"]
    assert {"simple", "sgm_uniform", "karras", "normal"} <= set(ks["input"]["required"]["scheduler"][0])
    assert ks["input"]["required"]["model"] == ["MODEL", {}]
    assert (ks["output"], ks["output_is_list"], ks["output_name"]) == (["LATENT"], [False], ["LATENT"])
    assert (ks["name"], ks["display_name"], ks["category"], ks["output_node"]) == (
        "KSampler",
        "KSampler",
        "sampling",
        False,
    )
    ckpt = info["CheckpointLoaderSimple"]
    assert ckpt["input"]["required"]["ckpt_name"][0] == [EMBEDDED]
    assert (ckpt["output"], ckpt["display_name"], ckpt["category"]) == (
        ["MODEL", "CLIP", "VAE"],
        "Load Checkpoint",
        "loaders",
    )
    text = info["CLIPTextEncode"]["input"]["required"]["text"]
    assert text[0] == "STRING" and text[1]["multiline"] is True and text[1]["dynamicPrompts"] is True
    width = info["EmptyLatentImage"]["input"]["required"]["width"]
    assert width[1].items() >= {"default": 512, "min": 16, "max": 16384, "step": 8}.items()
    assert info["VAEDecode"]["output"] == ["IMAGE"] and info["VAEDecode"]["display_name"] == "VAE Decode"
    save = info["SaveImage"]
    assert save["output_node"] is True and save["output"] == []
    assert save["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert save["input"]["required"]["filename_prefix"][1]["default"] == "ComfyUI"
    for name in (
        "CheckpointLoaderSimple",
        "ImageOnlyCheckpointLoader",
        "LoraLoader",
        "LoraLoaderModelOnly",
        "VAELoader",
        "ControlNetLoader",
        "UNETLoader",
        "UpscaleModelLoader",
        "StyleModelLoader",
        "GLIGENLoader",
    ):  # fmt: skip  (frontend 1.27.10 needs all ten to boot)
        assert info[name]["name"] == name
    assert info["LoraLoader"]["input"]["required"]["lora_name"] == [[], {}]
    assert server.http.get("/api/object_info/KSampler").json() == {"KSampler": ks}
    assert server.http.get("/object_info/NoSuchNode").json() == {}
    r = server.http.post("/prompt", json={"prompt": {"1": {"class_type": "LoraLoader", "inputs": {}}}})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_prompt"  # a stub cannot run


# ---------------------------------------------------------------- bad input


def _without(wf: dict, node: str, name: str) -> dict:
    del wf[node]["inputs"][name]
    return wf


def _with(node: str, **inputs) -> dict:
    wf = workflow(seed=30)
    wf[node]["inputs"].update(inputs)
    return wf


MALFORMED = [
    (b"{bad json", "invalid_prompt", None),
    (b"[]", "no_prompt", None),
    ({"client_id": "x"}, "no_prompt", None),
    ({"prompt": {}}, "no_prompt", None),
    ({"prompt": "a red circle"}, "no_prompt", None),
    ({"prompt": {"1": {"inputs": {}}}}, "invalid_prompt", "1"),
    ({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}, "invalid_prompt", "1"),
    ({"prompt": {"5": DEFAULT["5"]}}, "prompt_no_outputs", None),
    ({"prompt": _with("3", steps=0)}, "value_smaller_than_min", "3"),
    ({"prompt": _with("3", cfg=1000)}, "value_bigger_than_max", "3"),
    ({"prompt": _with("3", sampler_name="nope")}, "value_not_in_list", "3"),
    ({"prompt": _with("4", ckpt_name="v1-5-pruned-emaonly-fp16.safetensors")}, "value_not_in_list", "4"),
    ({"prompt": _with("3", seed="abc")}, "invalid_input_type", "3"),
    ({"prompt": _with("3", model=["4"])}, "bad_linked_input", "3"),
    ({"prompt": _with("8", samples=["4", 0])}, "return_type_mismatch", "8"),
    ({"prompt": _without(workflow(seed=30), "3", "model")}, "required_input_missing", "3"),
    ({"prompt": _with("5", width=36)}, "custom_validation_failed", "5"),
    ({"prompt": workflow(seed=30), "extra_data": "x"}, "invalid_prompt", None),
    ({"prompt": workflow(seed=30), "prompt_id": "../../etc"}, "invalid_prompt", None),
    ({"prompt": workflow(seed=30), "client_id": 7}, "invalid_prompt", None),
    ({"prompt": workflow(seed=30), "number": "first"}, "invalid_prompt", None),
]


@pytest.mark.parametrize(
    ("body", "kind", "node"), MALFORMED, ids=[f"{i}-{m[1]}" for i, m in enumerate(MALFORMED)]
)
def test_malformed_prompts_are_400(server, body, kind, node):
    r = server.http.post("/prompt", **({"content": body} if isinstance(body, bytes) else {"json": body}))
    assert r.status_code == 400, r.text
    data = r.json()
    assert set(data) == {"error", "node_errors"} and data["error"]["message"]
    if node is None:
        assert data["error"]["type"] == kind
    else:
        assert kind in [e["type"] for e in data["node_errors"][node]["errors"]], data
        assert data["error"]["type"] in (kind, "prompt_outputs_failed_validation", "invalid_prompt")
    assert server.http.get("/prompt").status_code == 200  # still serving


def test_a_failing_node_reports_and_the_next_prompt_runs(server):
    wf = workflow(seed=40)
    wf["10"] = {"class_type": "LoadImage", "inputs": {"image": "broken.png"}}
    (server.data / "comfyui" / "input").mkdir(parents=True, exist_ok=True)
    (server.data / "comfyui" / "input" / "broken.png").write_bytes(b"not a png")
    wf["11"] = {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}}
    with listen(server, "fail-client") as ws:
        ws.recv(timeout=60)
        prompt_id = post(server, wf, "fail-client")
        messages = until_done(ws, prompt_id)
        error = next(m["data"] for m in messages if isinstance(m, dict) and m["type"] == "execution_error")
        assert error["node_id"] == "10" and error["node_type"] == "LoadImage" and error["exception_message"]
        wait_for(lambda: server.state.history.get(prompt_id)["status"] == "error", "the failed row")
        entry = server.http.get(f"/history/{prompt_id}").json()[prompt_id]
        assert (
            entry["status"]["status_str"] == "error"
            and entry["status"]["messages"][-1][0] == "execution_error"
        )
        again = server.http.post("/prompt", json={"prompt": workflow(seed=41), "client_id": "fail-client"})
        assert until_done(ws, again.json()["prompt_id"])[-3]["type"] == "execution_success"


def test_small_routes(server):
    """Other routes ComfyUI clients call at start-up answer ComfyUI's shapes."""
    assert server.http.get("/features").json() == {
        "supports_preview_metadata": True,
        "max_upload_size": 104857600,
    }
    assert server.http.get("/extensions").json() == ["/extensions/glassforge/open-job.js"]  # web/comfy/
    assert server.http.get("/api/embeddings").json() == []
    assert "checkpoints" in server.http.get("/models").json()
    assert server.http.get("/models/checkpoints").json() == [EMBEDDED]
    assert server.http.get("/models/nope").status_code == 404
    assert server.http.post("/free", json={"unload_models": True}).status_code == 200
    assert server.state.manager.loaded() == []
    with ws_sync.connect(f"ws://127.0.0.1:{server.port}/api/ws") as ws:  # no clientId: one is made
        sid = json.loads(ws.recv(timeout=60))["data"]["sid"]
    assert len(sid) == 32 and int(sid, 16) >= 0


def test_userdata_and_settings(server):
    h = server.http
    assert h.get("/api/users").json() == {"storage": "server", "migrated": True}
    assert h.get("/api/settings").json()["Comfy.TutorialCompleted"] is True
    assert h.post("/api/settings/Comfy.Locale", json="fr").status_code == 200
    assert h.get("/api/settings/Comfy.Locale").json() == "fr"
    assert (
        h.post("/api/settings", json={"A.B": 1}).status_code == 200
        and h.get("/api/settings").json()["A.B"] == 1
    )
    r = h.post("/api/userdata/workflows%2Fa.json?full_info=true", content=b'{"nodes": []}')
    assert r.status_code == 200 and r.json()["path"] == "workflows/a.json" and r.json()["size"] == 13
    assert h.post("/api/userdata/workflows%2Fa.json?overwrite=false", content=b"{}").status_code == 409
    listing = h.get(
        "/api/userdata", params={"dir": "workflows", "recurse": "true", "split": "false", "full_info": "true"}
    )
    assert [e["path"] for e in listing.json()] == ["a.json"]
    assert h.get("/api/userdata", params={"dir": "workflows", "split": "true"}).json() == [
        ["a.json", "a.json"]
    ]
    assert h.get("/api/userdata/workflows%2Fa.json").content == b'{"nodes": []}'
    moved = h.post("/api/userdata/workflows%2Fa.json/move/workflows%2Fb.json")
    assert moved.status_code == 200 and moved.json() == "workflows/b.json"
    assert [e["name"] for e in h.get("/api/v2/userdata", params={"path": "workflows"}).json()] == ["b.json"]
    assert h.delete("/api/userdata/workflows%2Fb.json").status_code == 204
    assert h.get("/api/userdata/workflows%2Fb.json").status_code == 404
    assert h.get("/api/userdata", params={"dir": "nope"}).status_code == 404
    for bad in ("..%2F..%2Fhistory.sqlite3", "%2Fetc%2Fpasswd", "workflows%2F..%2F..%2F..%2Fx"):
        assert h.get(f"/api/userdata/{bad}").status_code == 403, bad
        assert h.post(f"/api/userdata/{bad}", content=b"x").status_code == 403, bad
    assert h.get("/api/userdata", params={"dir": "../.."}).status_code == 403
    assert h.get("/api/v2/userdata", params={"path": "../"}).status_code == 403
    assert Path(server.data / "comfyui" / "user" / "default" / "comfy.settings.json").is_file()


def test_an_input_gone_before_the_run_is_an_execution_error(server, gate):
    """Validated at POST, invalid when its turn comes (the uploaded image was deleted meanwhile)."""
    folder = server.data / "comfyui" / "input"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(folder / "gone.png")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "gone.png"}},
          "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}  # fmt: skip
    with listen(server, "gone-client") as ws:
        ws.recv(timeout=60)
        r = server.http.post("/prompt", json={"prompt": wf, "client_id": "gone-client"})
        assert r.status_code == 200, r.text
        (folder / "gone.png").unlink()
        gate.set()
        messages = until_done(ws, r.json()["prompt_id"])
    assert types(messages) == ["status", "execution_error", "executing", "status"]
    error = messages[1]["data"]
    assert error["exception_type"] == "WorkflowError" and "'gone.png' not in" in error["exception_message"]
    entry = server.http.get(f"/history/{r.json()['prompt_id']}").json()[r.json()["prompt_id"]]
    assert entry["status"] == {
        "status_str": "error",
        "completed": False,
        "messages": [["execution_error", error]],
    }
    wait_for(lambda: server.state.history.get(r.json()["prompt_id"])["status"] == "error", "the failed row")


def test_comfy_page_without_the_frontend_package(tmp_path, monkeypatch):
    """Without comfyui-frontend-package, /comfy/ says how to install it and the API still answers."""
    from fastapi.testclient import TestClient

    from glassforge.server import comfy_frontend
    from glassforge.server.app import create_app
    from glassforge.server.config import ServerConfig

    monkeypatch.setattr(comfy_frontend, "frontend_root", lambda: None)
    app = create_app(ServerConfig(data_dir=tmp_path, device="cpu", precision="fp32"))
    with TestClient(app) as client:
        for path in ("/comfy/", "/comfy/assets/index.js"):
            r = client.get(path)
            assert r.status_code == 404 and "pip install 'glassforge[comfyui]'" in r.text
        assert client.get("/comfy", follow_redirects=False).headers["location"] == "/comfy/"
        assert client.get("/comfy/api/queue").json() == {"queue_running": [], "queue_pending": []}
