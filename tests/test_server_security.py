"""glassforge serve's safety options on a live server (uvicorn on a loopback port, started by the test):
the API key on every route family (A1111, ComfyUI, own API, metrics, the websocket, the OpenAPI pages),
the routes left open (/health and the web UI's static files), the request body size limit, and CORS.

Oracles: the status codes and the one JSON message the guard answers with; "every route" is checked by
walking the server's own OpenAPI schema, so a route added later is covered without touching this file.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from live_server import live_server

KEY = "s3cret-key-0123"
LIMIT = 2**20  # 1 MB


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with (
        live_server(tmp_path_factory.mktemp("secure"), api_key=KEY, max_body_bytes=LIMIT) as srv,
        httpx.Client(base_url=srv.base, timeout=300) as anonymous,
        httpx.Client(base_url=srv.base, timeout=300, headers={"X-API-Key": KEY}) as client,
    ):
        yield SimpleNamespace(port=srv.port, http=anonymous, client=client, data=srv.data)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.url, response.status_code, response.text[:200])
    body = response.json()
    assert body["error"] == "Unauthorized"
    assert "Authorization: Bearer KEY" in body["detail"] and "X-API-Key: KEY" in body["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def png_bytes(size=8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


# one or more routes of every family: (method, path, what a request with the key answers)
FAMILIES = [
    ("GET", "/sdapi/v1/samplers", 200),
    ("GET", "/sdapi/v1/options", 200),
    ("GET", "/sdapi/v1/progress", 200),
    ("POST", "/sdapi/v1/interrupt", 200),
    ("GET", "/object_info/KSampler", 200),
    ("GET", "/api/object_info/KSampler", 200),
    ("GET", "/queue", 200),
    ("GET", "/history", 200),
    ("GET", "/system_stats", 200),
    ("GET", "/view?filename=none.png", 404),
    ("GET", "/api/v1/info", 200),
    ("GET", "/api/v1/jobs", 200),
    ("GET", "/api/v1/history", 200),
    ("GET", "/api/v1/jobs/unknown", 404),
    ("GET", "/metrics", 200),
    ("GET", "/openapi.json", 200),
    ("GET", "/docs", 200),
]


@pytest.mark.parametrize(("method", "path", "status"), FAMILIES)
def test_every_route_family_needs_the_key(server, method, path, status):
    assert_refused(server.http.request(method, path))
    assert server.client.request(method, path).status_code == status


def test_every_route_in_the_schema_needs_the_key(server):
    """Walk /openapi.json: every operation but /health answers 401 without the key, before validation."""
    schema = server.client.get("/openapi.json").json()
    checked = 0
    for path, operations in schema["paths"].items():
        url = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            response = server.http.request(method.upper(), url, json={"prompt": "x"})
            if path == "/health":
                assert response.status_code == 200
                continue
            assert_refused(response)
            checked += 1
    assert checked > 60  # the A1111, ComfyUI and own APIs together


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {KEY}"},
        {"X-API-Key": KEY},
        {"Cookie": f"other=1; glassforge_api_key={KEY}"},  # what the web UI sets for <img> URLs
        {"Authorization": "Basic " + base64.b64encode(f"anyone:{KEY}".encode()).decode()},
    ],
    ids=["bearer", "bearer-lowercase", "x-api-key", "cookie", "basic"],
)
def test_key_in_any_accepted_place(server, headers):
    response = server.http.get("/api/v1/info", headers=headers)
    assert response.status_code == 200 and "samplers" in response.json()


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Basic " + base64.b64encode(f"{KEY}:wrong".encode()).decode()},
        {"Authorization": "Basic !!not-base64!!"},
        {"X-API-Key": KEY[:-1]},
        {"X-API-Key": KEY + "x"},
        {"X-API-Key": ""},
        {"Cookie": "glassforge_api_key=wrong"},
    ],
)
def test_wrong_keys_refused(server, headers):
    assert_refused(server.http.get("/api/v1/info", headers=headers))


def test_a_query_token_does_not_open_http_routes(server):
    assert_refused(server.http.get(f"/api/v1/info?token={KEY}"))


def test_health_and_the_web_ui_files_stay_open(server):
    health = server.http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    page = server.http.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    script = server.http.get("/ui/js/util.js")
    assert script.status_code == 200 and "X-API-Key" in script.text  # the UI sends the key it was given
    assert_refused(server.http.get("/ui/../api/v1/info"))  # no way around the guard through the open prefix


def test_a_job_runs_with_the_key(server):
    body = {"prompt": "a red circle", "steps": 2, "seed": 3, "sampler_name": "Euler"}
    assert_refused(server.http.post("/api/v1/jobs", json=body))
    job_id = server.client.post("/api/v1/jobs", json=body).json()["id"]
    while (job := server.client.get(f"/api/v1/jobs/{job_id}").json())["status"] in ("pending", "running"):
        time.sleep(0.05)
    assert job["status"] == "done", job["error"]
    assert_refused(server.http.get(f"/api/v1/jobs/{job_id}/images/0"))
    image = server.client.get(f"/api/v1/jobs/{job_id}/images/0")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


# ComfyUI's default graph in API format (with the ``_meta`` titles comfy-api-simplified finds nodes by),
# on the embedded model at 32 px
COMFY_DEFAULT = {
    "3": {"inputs": {"seed": 5, "steps": 4, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
                     "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]},
          "class_type": "KSampler", "_meta": {"title": "KSampler"}},
    "4": {"inputs": {"ckpt_name": "glassforge-shapes.safetensors"}, "class_type": "CheckpointLoaderSimple",
          "_meta": {"title": "Load Checkpoint"}},
    "5": {"inputs": {"width": 32, "height": 32, "batch_size": 1}, "class_type": "EmptyLatentImage",
          "_meta": {"title": "Empty Latent Image"}},
    "6": {"inputs": {"text": "a red circle", "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
          "_meta": {"title": "CLIP Text Encode (Prompt)"}},
    "7": {"inputs": {"text": "", "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
          "_meta": {"title": "CLIP Text Encode (Prompt)"}},
    "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode", "_meta": {"title": "VAE Decode"}},
    "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage",
          "_meta": {"title": "Save Image"}},
}  # fmt: skip


def test_real_clients_with_their_auth_options(server, tmp_path):
    """A1111's and ComfyUI's clients send HTTP basic auth; the key as the password lets them in unchanged."""
    webuiapi = pytest.importorskip("webuiapi")
    comfy_api = pytest.importorskip("comfy_api_simplified")

    a1111 = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)
    assert a1111.get_samplers()["error"] == "Unauthorized"
    with pytest.raises(RuntimeError, match="401"):
        a1111.txt2img(prompt="a red circle", seed=9, width=32, height=32)
    a1111.set_auth("glassforge", KEY)
    assert "Euler a" in [s["name"] for s in a1111.get_samplers()]
    result = a1111.txt2img(prompt="a red circle", seed=9, width=32, height=32, cfg_scale=7)
    assert result.image.size == (32, 32) and "Seed: 9," in result.info["infotexts"][0]

    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(COMFY_DEFAULT))
    wf = comfy_api.ComfyWorkflowWrapper(str(path))
    wf.set_node_param("KSampler", "steps", 2)
    anonymous = comfy_api.ComfyApiWrapper(f"http://127.0.0.1:{server.port}")
    with pytest.raises(comfy_api.exceptions.ComfyApiError, match="401"):
        anonymous.queue_prompt(wf)
    comfy = comfy_api.ComfyApiWrapper(f"http://127.0.0.1:{server.port}", user="glassforge", password=KEY)
    # the client collects the live preview frames from the websocket (basic auth there too)
    frames = comfy.queue_and_wait_images(wf, "Save Image")
    assert len(frames) >= 1 and all(Image.open(io.BytesIO(f)).size[0] > 0 for f in frames.values())
    assert comfy.get_queue() == {"queue_running": [], "queue_pending": []}
    history = server.client.get("/history").json()  # every prompt: the one just run succeeded
    assert [h["status"]["status_str"] for h in history.values()][-1] == "success"


# ---------------------------------------------------------------- the websocket


def _ws(server, query: str = "", headers: dict | None = None):
    import websockets

    async def connect():
        url = f"ws://127.0.0.1:{server.port}/ws{query}"
        async with websockets.connect(url, additional_headers=headers or {}) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 60))

    return asyncio.run(connect())


@pytest.mark.parametrize("path", ["/ws", "/api/ws", "/comfy/ws"])
def test_websocket_refused_without_the_key(server, path):
    import websockets

    async def connect():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}{path}?clientId=a"):
            pass

    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        asyncio.run(connect())
    response = e.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["error"] == "Unauthorized"


def test_websocket_with_a_token_or_a_header(server):
    first = _ws(server, f"?clientId=abc&token={KEY}")
    assert first["type"] == "status" and first["data"]["sid"] == "abc"
    first = _ws(server, "?clientId=def", headers={"Authorization": f"Bearer {KEY}"})
    assert first["type"] == "status" and first["data"]["sid"] == "def"


def test_websocket_wrong_token(server):
    import websockets

    async def connect():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws?token=wrong"):
            pass

    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        asyncio.run(connect())
    assert e.value.response.status_code == 401


# ---------------------------------------------------------------- the body size limit


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert response.json() == {
        "error": "PayloadTooLarge",
        "detail": "the request body is larger than the server's limit of 1 MB (1048576 bytes)",
    }


def test_body_over_the_limit_refused_and_the_server_still_serves(server):
    big = {"prompt": "x" * (LIMIT + 10)}
    assert_too_large(server.client.post("/api/v1/jobs", json=big))
    assert_too_large(server.client.post("/sdapi/v1/txt2img", json=big))
    assert_too_large(server.client.post("/prompt", json={"prompt": {}, "pad": "x" * LIMIT}))
    assert_refused(server.http.post("/api/v1/jobs", json=big))  # no key: the key is checked first
    assert server.client.get("/health").status_code == 200
    assert server.client.get("/api/v1/info").status_code == 200


def test_streamed_body_over_the_limit_refused(server):
    """A chunked body has no Content-Length: it is counted as it arrives."""

    def chunks():
        for _ in range(20):
            yield b"x" * (LIMIT // 8)

    response = server.client.post(
        "/sdapi/v1/png-info", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_too_large(response)
    assert server.client.get("/api/v1/info").status_code == 200


def test_upload_over_the_limit_refused_and_a_small_one_works(server):
    big = png_bytes(8) + b"\0" * (LIMIT + 1)
    assert_too_large(server.client.post("/upload/image", files={"image": ("big.png", big, "image/png")}))
    small = server.client.post("/upload/image", files={"image": ("small.png", png_bytes(8), "image/png")})
    assert small.status_code == 200 and small.json()["name"] == "small.png"


def test_body_under_the_limit_reaches_the_route(server):
    """Just under the limit: the route itself answers (here: not an image), not the guard."""
    response = server.client.post("/sdapi/v1/png-info", json={"image": "A" * (LIMIT - 100)})
    assert response.status_code not in (401, 413) and 400 <= response.status_code < 500, response.text[:200]


# ---------------------------------------------------------------- CORS


def test_cors_off_by_default(server):
    response = server.client.get("/api/v1/info", headers={"Origin": "https://example.org"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = server.http.options(
        "/api/v1/jobs",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_for_the_allowed_origins_only(tmp_path):
    with (
        live_server(tmp_path, api_key=KEY, cors_origins=("https://example.org",)) as srv,
        httpx.Client(base_url=srv.base, timeout=60) as http,
    ):
        preflight = http.options(
            "/api/v1/jobs",
            headers={
                "Origin": "https://example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, content-type",
            },
        )  # a browser's preflight carries no key: it is answered all the same
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://example.org"
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        ok = http.get("/api/v1/info", headers={"Origin": "https://example.org", "X-API-Key": KEY})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://example.org"
        denied = http.get("/api/v1/info", headers={"Origin": "https://example.org"})
        assert denied.status_code == 401  # the browser may read why
        assert denied.headers["access-control-allow-origin"] == "https://example.org"
        other = http.get("/api/v1/info", headers={"Origin": "https://evil.example", "X-API-Key": KEY})
        assert "access-control-allow-origin" not in other.headers


def test_config_refuses_bad_safety_options(tmp_path):
    from glassforge.server.config import ServerConfig

    with pytest.raises(ValueError, match="the API key is empty"):
        ServerConfig(data_dir=tmp_path, api_key="  ")
    with pytest.raises(ValueError, match="max_body_bytes 0 must be a positive number"):
        ServerConfig(data_dir=tmp_path, max_body_bytes=0)
    with pytest.raises(ValueError, match=r"CORS origin 'example.org' must look like https://example.org"):
        ServerConfig(data_dir=tmp_path, cors_origins=("example.org",))


def test_cli_options_and_environment(monkeypatch):
    from glassforge.cli import build_parser
    from glassforge.server.cli import config_from_args

    parse = build_parser().parse_args
    monkeypatch.setenv("GLASSFORGE_API_KEY", "from-env")
    config = config_from_args(parse(["serve", "--data", "/tmp/x"]))
    assert (config.api_key, config.max_body_bytes, config.cors_origins, config.db_url) == (
        "from-env",
        32 * 2**20,
        (),
        None,
    )
    args = ["serve", "--api-key", "given", "--max-body-mb", "0.5", "--cors-origin", "https://a.example",
            "--cors-origin", "http://b.example:8080/", "--db", "postgresql://u@h/db"]  # fmt: skip
    config = config_from_args(parse(args))
    assert config.api_key == "given" and config.max_body_bytes == 2**19
    assert config.cors_origins == ("https://a.example", "http://b.example:8080")
    assert config.db_url == "postgresql://u@h/db"
    monkeypatch.delenv("GLASSFORGE_API_KEY")
    assert config_from_args(parse(["serve"])).api_key is None


# ---------------------------------------------------------------- a browser with the key


def test_browser_gets_the_key_once_and_everything_loads(server):
    """The web UI opened as ``/?api_key=KEY``: the key leaves the address bar, API calls, <img> images and
    the ComfyUI editor all get through (header and SameSite cookie); without it the page says why."""
    import importlib.util

    from browser import chromium, open_page

    base = f"http://127.0.0.1:{server.port}"
    with chromium() as browser:
        w = open_page(browser, f"{base}/")
        w.page.wait_for_selector("body[data-ready='1']")
        assert "needs its API key" in w.page.text_content("#notice-text")
        w.page.close()

        w = open_page(browser, f"{base}/?api_key={KEY}#/generate")
        page, refused = w.page, []
        page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
        page.wait_for_selector("body[data-ready='1']")
        assert page.url == f"{base}/#/generate"  # the key is not left in the address bar or the history
        assert page.evaluate("JSON.parse(localStorage.getItem('glassforge.apiKey'))") == KEY
        page.fill("#g-prompt", "a red circle")
        page.fill("#g-steps", "3")
        page.fill("#g-seed", "5")
        page.click("#g-generate")
        page.wait_for_function(
            "document.querySelector('#g-images img')?.complete && "
            "document.querySelector('#g-images img').naturalWidth === 32",
            timeout=300_000,
        )  # an <img> URL: it carries no header, the cookie gets it through
        page.reload(wait_until="load")  # the key is remembered
        page.wait_for_selector("body[data-ready='1']")
        if importlib.util.find_spec("comfyui_frontend_package") is not None:
            page.goto(f"{base}/comfy/", wait_until="load")
            page.wait_for_function(
                "() => window.comfyAPI?.app?.app?.graph?._nodes.length === 7", timeout=120_000
            )
        assert refused == []
        assert w.page_errors == []
