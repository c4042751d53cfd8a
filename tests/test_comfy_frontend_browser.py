"""The official ComfyUI frontend (``comfyui-frontend-package`` 1.27.10, unmodified) boots at ``/comfy/``
on glassforge in headless Chromium, runs its default graph on the embedded model and shows the image.

The default graph names ``v1-5-pruned-emaonly-fp16.safetensors``; the test sets the graph's widgets
through the page's own app object (``window.comfyAPI.app.app``): our checkpoint, 32×32, 4 steps, a
fixed seed. Then it clicks Run, as a user does. Oracles: the image the page loads through ``/view`` is
the file the server saved; the page got one binary preview frame per step; no console or page errors
and no request leaves the machine. Screenshots: ``tests/artifacts/comfy_frontend_*.png``.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from urllib.parse import parse_qs, urlparse

import pytest

from browser import ARGS, CHROMIUM, Watched, artifact, require_chromium

if importlib.util.find_spec("comfyui_frontend_package") is None:
    pytest.skip(
        "comfyui-frontend-package is not installed (pip install 'glassforge[comfyui]')",
        allow_module_level=True,
    )

EMBEDDED = "glassforge-shapes.safetensors"
STEPS = 4
APP = "window.comfyAPI.app.app"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_chromium()
    import uvicorn

    from glassforge.server.app import create_app
    from glassforge.server.config import ServerConfig

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    data = tmp_path_factory.mktemp("comfy-frontend")
    app = create_app(ServerConfig(port=port, data_dir=data, device="cpu", precision="fp32"))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):
        if srv.started or not thread.is_alive():
            break
        time.sleep(0.1)
    assert srv.started, "the server did not start"
    yield port, data
    srv.should_exit = True
    thread.join(60)
    sock.close()


def test_frontend_boots_runs_the_default_graph_and_shows_the_image(server):
    from playwright.sync_api import sync_playwright

    port, data = server
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=list(ARGS), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            watched = Watched(page)
            binary_frames: list[bytes] = []
            page.on("console", lambda m: watched.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: watched.page_errors.append(str(e)))
            page.on("request", lambda r: watched.requests.append(r.url))
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda f: binary_frames.append(f) if isinstance(f, bytes) else None))  # fmt: skip
            page.goto(f"{base}/comfy/", wait_until="load")

            # boot: the default graph, with the widgets /object_info describes
            page.wait_for_function(
                f"() => {APP} && {APP}.graph && {APP}.graph._nodes.length === 7", timeout=120_000
            )
            nodes = page.evaluate(f"() => {APP}.graph._nodes.map(n => n.type).sort()")
            assert nodes == ["CLIPTextEncode", "CLIPTextEncode", "CheckpointLoaderSimple", "EmptyLatentImage",
                             "KSampler", "SaveImage", "VAEDecode"]  # fmt: skip
            choices = page.evaluate(f"""() => {APP}.graph._nodes.find(n => n.type === 'CheckpointLoaderSimple')
                .widgets.find(w => w.name === 'ckpt_name').options.values""")
            assert choices == [EMBEDDED]
            page.screenshot(path=artifact("comfy_frontend_boot.png"))

            page.evaluate(f"""() => {{
                const set = (type, name, value) => {{
                    for (const n of {APP}.graph._nodes.filter(n => n.type === type))
                        n.widgets.find(w => w.name === name).value = value;
                }};
                set('CheckpointLoaderSimple', 'ckpt_name', '{EMBEDDED}');
                set('EmptyLatentImage', 'width', 32);
                set('EmptyLatentImage', 'height', 32);
                set('KSampler', 'steps', {STEPS});
                set('KSampler', 'seed', 1234);
                set('KSampler', 'control_after_generate', 'fixed');
                {APP}.graph.setDirtyCanvas(true, true);
            }}""")
            page.get_by_role("button", name="Run", exact=True).click()

            # the run: executed reaches the page, the SaveImage node loads the image through /view
            page.wait_for_function(f"() => {APP}.nodeOutputs['9']?.images?.length === 1", timeout=300_000)
            page.evaluate(
                f"() => {APP}.canvas.centerOnNode({APP}.graph._nodes.find(n => n.type === 'SaveImage'))"
            )
            page.wait_for_function(f"""() => {{
                const n = {APP}.graph._nodes.find(n => n.type === 'SaveImage');
                return n.imgs?.length === 1 && n.imgs[0].complete && n.imgs[0].naturalWidth === 32;
            }}""", timeout=60_000)  # fmt: skip
            page.screenshot(path=artifact("comfy_frontend_run.png"))
            src = page.evaluate(f"() => {APP}.graph._nodes.find(n => n.type === 'SaveImage').imgs[0].src")
            shown = page.evaluate(
                "async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer()))", src
            )
            errors, requests = watched.errors, watched.remote_requests()
        finally:
            browser.close()

    print("screenshots:", artifact("comfy_frontend_boot.png"), artifact("comfy_frontend_run.png"))
    query = parse_qs(urlparse(src).query)
    assert urlparse(src).path == "/comfy/api/view" and query["type"] == ["output"]
    saved = data / "outputs" / "comfyui" / query["filename"][0]
    assert query["filename"][0] == "ComfyUI_00001_.png" and bytes(shown) == saved.read_bytes()
    from PIL import Image

    workflow = json.loads(Image.open(saved).text["prompt"])
    assert workflow["3"]["inputs"]["seed"] == 1234 and workflow["4"]["inputs"]["ckpt_name"] == EMBEDDED
    previews = [f for f in binary_frames if f[:4] == b"\x00\x00\x00\x04"]  # type 4: with metadata
    assert len(previews) == STEPS and len(binary_frames) == STEPS
    assert errors == [], errors
    assert all(u.startswith(base) or u.startswith("blob:") for u in requests), requests
