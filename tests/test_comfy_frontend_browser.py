"""The official ComfyUI frontend (``comfyui-frontend-package`` 1.27.10, unmodified) boots at ``/comfy/``
on glassforge in headless Chromium, runs its default graph on the embedded model and shows the image.

The default graph names ``v1-5-pruned-emaonly-fp16.safetensors``; the test sets the graph's widgets
through the page's own app object (``window.comfyAPI.app.app``): our checkpoint, 32×32, 4 steps, a
fixed seed. Then it clicks Run, as a user does. Oracles: the image the page loads through ``/view`` is
the file the server saved; the page got one binary preview frame per step; no console or page errors
and no request leaves the machine. Screenshots: ``tests/artifacts/comfy_frontend_*.png``.

The web UI's "Open the node editor" (``/comfy/?glassforge_job=<id>``): glassforge's frontend extension
(``web/comfy/open-job.js``, listed by ``/api/extensions``) loads the job's graph; Run makes the job's image
again, pixel for pixel. Also the form's parameters (``?glassforge_form=``) and an unknown job.
"""

from __future__ import annotations

import importlib.util
import json
import time
from urllib.parse import parse_qs, quote, urlparse

import pytest

from browser import ARGS, CHROMIUM, Watched, artifact, require_chromium
from live_server import live_server

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
    with live_server(tmp_path_factory.mktemp("comfy-frontend")) as srv:
        yield srv.port, srv.data


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


# ---------------------------------------------------------------- a glassforge job opened in the editor

PROMPT = "a red circle"
NEGATIVE = "blurry"
JOB_SEED = 4242


def _open(browser, url: str) -> tuple[Watched, list[str], list]:
    """A new page (a new context: empty local storage) on ``url``; also collects console warnings and
    the responses."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    watched, warnings, responses = Watched(page), [], []
    page.on("response", lambda r: responses.append(r))
    page.on("console", lambda m: watched.console_errors.append(m.text) if m.type == "error" else None)
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.on("pageerror", lambda e: watched.page_errors.append(str(e)))
    page.on("request", lambda r: watched.requests.append(r.url))
    page.goto(url, wait_until="load")
    return watched, warnings, responses


def _widgets(page) -> dict[str, dict[str, object]]:
    """Each node's widget values by node id (the control_after_generate widget included)."""
    return page.evaluate(f"""() => Object.fromEntries({APP}.graph._nodes.map(n =>
        [String(n.id), Object.fromEntries((n.widgets ?? []).map(w => [w.name, w.value]))]))""")


def _pixels(data: bytes) -> bytes:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data))
    assert image.size == (32, 32)
    return image.convert("RGB").tobytes()


def test_job_link_opens_the_jobs_graph_in_the_editor_and_it_runs(server):
    """``/comfy/?glassforge_job=<id>`` (the web UI's "Open the node editor"): the glassforge extension,
    listed by ``/api/extensions``, loads the job's workflow; Run makes the job's image again."""
    import httpx
    from playwright.sync_api import sync_playwright

    port, _ = server
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=60)
    assert http.get("/comfy/api/extensions").json() == ["/extensions/glassforge/open-job.js"]
    module = http.get("/comfy/extensions/glassforge/open-job.js")
    assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
    assert (
        "glassforge_job" in module.text
        and http.get("/comfy/extensions/glassforge/nope.js").status_code == 404
    )

    job = http.post("/api/v1/jobs", json={"prompt": PROMPT, "negative_prompt": NEGATIVE, "model": EMBEDDED,
                                          "width": 32, "height": 32, "steps": 3, "seed": JOB_SEED,
                                          "sampler_name": "Euler"}).json()  # fmt: skip
    for _ in range(1200):
        view = http.get(f"/api/v1/jobs/{job['id']}").json()
        if view["status"] not in ("pending", "running"):
            break
        time.sleep(0.25)
    assert view["status"] == "done", view
    job_image = _pixels(http.get(view["image_urls"][0]).content)
    http.close()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=list(ARGS), headless=True)
        try:
            # the web UI's Workflow page, its link "Open the node editor"
            watched, _, responses = _open(browser, f"{base}/#/workflow/{job['id']}")
            page = watched.page
            page.wait_for_selector("body[data-ready='1'] #w-graph svg g.node")
            responses.clear()  # the editor's own from here
            with page.expect_navigation(url=f"{base}/comfy/?glassforge_job={job['id']}"):
                page.click("#w-editor")
            page.wait_for_function(f"""() => {APP}?.graph?._nodes.length === 8 &&
                {APP}.graph._nodes.find(n => n.type === 'KSampler')?.widgets
                  .find(w => w.name === 'control_after_generate').value === 'fixed'""", timeout=120_000)  # fmt: skip
            widgets = _widgets(page)
            fetched = [r for r in responses if r.url == f"{base}/api/v1/jobs/{job['id']}/workflow"]
            expected = fetched[0].json()["workflow"]  # what the extension loaded
            assert len(fetched) == 1 and expected["7"]["inputs"]["seed"] == JOB_SEED
            for node_id, node in expected.items():  # every value the job's workflow sets is in the graph
                for name, value in node["inputs"].items():
                    if not isinstance(value, list):
                        assert widgets[node_id][name] == value, (node_id, name)
            assert widgets["7"]["seed"] == JOB_SEED and widgets["4"]["text"] == PROMPT
            assert widgets["5"]["text"] == NEGATIVE and widgets["7"]["steps"] == 3
            links = page.evaluate(f"() => {APP}.graph.links.size ?? Object.keys({APP}.graph.links).length")
            assert links == sum(isinstance(v, list) for n in expected.values() for v in n["inputs"].values())
            assert page.evaluate("location.search") == ""  # a reload keeps the user's edits
            tab = page.evaluate(f"""() => {{
                const w = {APP}.extensionManager.workflow.activeWorkflow;
                const k = w.changeTracker.initialState.nodes.find(n => n.type === 'KSampler');
                return [w.filename, k.widgets_values.slice(0, 2)];
            }}""")  # fmt: skip
            assert tab == [f"glassforge job {job['id'][:8]}", [JOB_SEED, "fixed"]]  # its own tab, as loaded
            page.evaluate(f"() => {APP}.canvas.centerOnNode({APP}.graph.getNodeById(7))")
            page.screenshot(path=artifact("comfy_frontend_job.png"))

            page.get_by_role("button", name="Run", exact=True).click()
            page.wait_for_function(f"() => {APP}.nodeOutputs['9']?.images?.length === 1", timeout=300_000)
            page.evaluate(f"() => {APP}.canvas.centerOnNode({APP}.graph.getNodeById(9))")
            page.wait_for_function(f"""() => {{
                const n = {APP}.graph.getNodeById(9);
                return n.imgs?.length === 1 && n.imgs[0].complete && n.imgs[0].naturalWidth === 32;
            }}""", timeout=60_000)  # fmt: skip
            page.screenshot(path=artifact("comfy_frontend_job_run.png"))
            src = page.evaluate(f"() => {APP}.graph.getNodeById(9).imgs[0].src")
            shown = page.evaluate(
                "async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer()))", src
            )
            assert _widgets(page)["7"]["seed"] == JOB_SEED  # fixed: Run again makes the same image
            errors, requests = watched.errors, watched.remote_requests()
        finally:
            browser.close()

    print("screenshots:", artifact("comfy_frontend_job.png"), artifact("comfy_frontend_job_run.png"))
    assert _pixels(bytes(shown)) == job_image  # the same graph, the same seed: the job's image
    assert errors == [], errors
    assert all(u.startswith(base) or u.startswith("blob:") for u in requests), requests


def test_form_link_and_an_unknown_job(server):
    """``?glassforge_form=<JSON>`` loads the graph of form parameters (the Workflow page with no job). In
    the same tab later: the frontend first restores the previous graph from local storage; an unknown job
    leaves it and warns (the one console error is the browser's line for the 404), a new link replaces it."""
    from playwright.sync_api import sync_playwright

    port, _ = server
    base = f"http://127.0.0.1:{port}"
    form = {"prompt": "two blue squares", "model": EMBEDDED, "width": 32, "height": 32, "steps": 5, "seed": 9}
    ready = f"() => {APP}?.graph?._nodes.length === 8 && location.search === ''"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=list(ARGS), headless=True)
        try:
            watched, warnings, _ = _open(browser, f"{base}/comfy/?glassforge_form={quote(json.dumps(form))}")
            page = watched.page
            page.wait_for_function(ready, timeout=120_000)
            widgets = _widgets(page)
            assert widgets["4"]["text"] == form["prompt"] and widgets["7"]["seed"] == 9
            assert widgets["7"]["steps"] == 5 and widgets["6"]["width"] == 32
            assert widgets["1"]["ckpt_name"] == EMBEDDED and widgets["7"]["control_after_generate"] == "fixed"
            form_errors = list(watched.errors)

            page.goto(f"{base}/comfy/?glassforge_job=no-such-job", wait_until="load")
            # the warning comes as a toast once the frontend's own graph is up
            page.locator(".p-toast-message").filter(has_text="no-such-job").wait_for(timeout=120_000)
            kept = _widgets(page)
            page.screenshot(path=artifact("comfy_frontend_unknown_job.png"))
            missing_errors = watched.errors[len(form_errors) :]

            again = {**form, "prompt": "a green triangle", "seed": 10}
            page.goto(f"{base}/comfy/?glassforge_form={quote(json.dumps(again))}", wait_until="load")
            page.wait_for_function(f"{APP}?.graph?.getNodeById(7)?.widgets[0].value === 10", timeout=120_000)
            replaced = _widgets(page)
            errors = watched.errors[len(form_errors) + len(missing_errors) :]
        finally:
            browser.close()

    assert form_errors == [] and errors == [], (form_errors, errors)
    ours = [w for w in warnings if w.startswith("glassforge:")]  # the server's 404 message, passed on
    assert len(ours) == 1 and ours[0].startswith("glassforge: could not open job no-such-job: no job"), ours
    assert kept == widgets  # the restored graph, as it was
    assert len(missing_errors) == 1 and "404" in missing_errors[0], (
        missing_errors
    )  # the browser's network line
    assert replaced["4"]["text"] == "a green triangle" and len(replaced) == 8
