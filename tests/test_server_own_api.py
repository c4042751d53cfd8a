"""glassforge's own API (/api/v1) and the web UI's files, through httpx (FastAPI's TestClient runs the
app with its lifespan: the job queue's worker thread, the history database, the embedded model).

Oracles: images are byte-for-byte what ``txt2img()`` + ``encode_image`` make for the same parameters;
an explain job's image equals the plain job's (recording changes nothing); the explanation's numbers
equal its own ``trace.json`` and the PNG's pixels; token counts equal the tokenizer's A1111 counter.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

PROMPT = "a red circle on a blue background"
SMALL = {"prompt": PROMPT, "steps": 5, "cfg_scale": 7.0, "sampler_name": "Euler", "seed": 1234}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from glassforge.server.app import create_app
    from glassforge.server.config import ServerConfig

    data = tmp_path_factory.mktemp("own-api")
    app = create_app(ServerConfig(data_dir=data, device="cpu", precision="fp32"))
    with TestClient(app) as c:
        c.data = data
        c.state = app.state.glassforge
        yield c


def wait(client, job_id: str, predicate=None, timeout: float = 300.0) -> dict:
    """Poll GET /api/v1/jobs/{id} until ``predicate`` (default: finished) holds."""
    done = predicate or (lambda j: j["status"] in ("done", "error", "interrupted"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach the expected state: {job}")


def reference_png(client, **kwargs) -> tuple[bytes, str]:
    from glassforge.pngfile import encode_image
    from glassforge.txt2img import Txt2ImgParams, txt2img

    managed = client.state.manager.get(None)
    with torch.inference_mode():
        result = txt2img(
            managed.model, Txt2ImgParams(**kwargs), model_name=managed.path.stem, model_hash=managed.hash
        )
    return encode_image(result.images[0], result.infotexts[0]), result.infotexts[0]


@pytest.fixture(scope="module")
def plain(client):
    r = client.post("/api/v1/jobs", json=SMALL)
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("pending", "running")  # answered before the job ran
    return wait(client, r.json()["id"])


@pytest.fixture(scope="module")
def explained(client):
    r = client.post("/api/v1/explain", json=SMALL)
    assert r.status_code == 202, r.text
    return wait(client, r.json()["id"])


# ---------------------------------------------------------------- jobs


def test_job_image_equals_txt2img(client, plain):
    assert plain["status"] == "done" and plain["kind"] == "txt2img" and plain["error"] is None
    png, infotext = reference_png(client, prompt=PROMPT, seed=1234, sampler="Euler", steps=5, cfg_scale=7.0,
                                  width=32, height=32)  # fmt: skip
    r = client.get(plain["image_urls"][0])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == png
    assert plain["infotexts"] == [infotext]
    assert plain["params"]["width"] == 32 and plain["params"]["model"] == "glassforge-shapes.safetensors"
    assert plain["form"]["seed"] == 1234 and plain["form"]["sampler_name"] == "Euler"
    p = plain["progress"]
    assert (p["step"], p["total"], p["eta"]) == (5, 5, 0.0) and p["s_per_it"] > 0
    assert p["it_per_s"] == pytest.approx(1 / p["s_per_it"], rel=1e-2)
    assert plain["steps_done"] == 5 and plain["explained"] is False
    assert client.get(f"/api/v1/jobs/{plain['id']}/images/1").status_code == 404


def test_job_list_preview_and_history(client, plain):
    listed = client.get("/api/v1/jobs").json()
    assert plain["id"] in [j["id"] for j in listed["jobs"]] and listed["queue_length"] == 0
    preview = client.get(f"/api/v1/jobs/{plain['id']}/preview")
    assert preview.status_code == 200 and preview.headers["x-step"] == "0/5"
    assert Image.open(io.BytesIO(preview.content)).size == (32, 32)
    jpeg = client.get(f"/api/v1/jobs/{plain['id']}/preview", params={"format": "jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    rows = client.get("/api/v1/history", params={"q": "red circle", "sampler": "k_euler"}).json()["rows"]
    assert plain["id"] in [r["id"] for r in rows]
    row = next(r for r in rows if r["id"] == plain["id"])
    assert row["image_urls"] == plain["image_urls"] and Path(row["images"][0]).is_file()


def test_rating_is_kept(client, plain):
    job_id = plain["id"]
    r = client.post(f"/api/v1/jobs/{job_id}/rating", json={"rating": -1, "note": "too blurry"})
    assert r.json() == {"id": job_id, "rating": -1, "note": "too blurry"}
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert (job["rating"], job["note"]) == (-1, "too blurry")
    assert [row["id"] for row in client.get("/api/v1/history", params={"rating": -1}).json()["rows"]] == [
        job_id
    ]
    assert client.post(f"/api/v1/jobs/{job_id}/rating", json={"rating": 2}).status_code == 422
    assert client.post(f"/api/v1/jobs/{job_id}/rating", json={"rating": None}).json()["rating"] is None


def test_rerun_makes_the_same_image(client, plain):
    r = client.post(f"/api/v1/jobs/{plain['id']}/rerun", json={})
    assert r.status_code == 202
    again = wait(client, r.json()["id"])
    assert again["id"] != plain["id"] and again["form"]["seed"] == 1234
    assert client.get(again["image_urls"][0]).content == client.get(plain["image_urls"][0]).content


def test_interrupt_by_id(client):
    job = client.post("/api/v1/jobs", json={**SMALL, "steps": 1000}).json()
    wait(client, job["id"], lambda j: j["status"] == "running" and j["progress"]["step"] >= 2)
    running = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert running["progress"]["s_per_it"] > 0 and running["progress"]["eta"] > 0
    assert client.post(f"/api/v1/jobs/{job['id']}/interrupt").status_code == 200
    done = wait(client, job["id"])
    assert done["status"] == "interrupted" and 2 <= done["steps_done"] < 1000
    assert len(done["image_urls"]) == 1  # the batch cut short, decoded from its latest x0
    image = Image.open(io.BytesIO(client.get(done["image_urls"][0]).content))
    assert image.size == (32, 32) and "Steps: 1000" in image.info["parameters"]


# ---------------------------------------------------------------- explain jobs


def test_explain_job_image_and_files(client, plain, explained):
    from safetensors import safe_open

    assert explained["status"] == "done" and explained["kind"] == "explain" and explained["explained"] is True
    assert client.get(explained["image_urls"][0]).content == client.get(plain["image_urls"][0]).content
    doc = client.get(f"/api/v1/jobs/{explained['id']}/trace.json").json()
    assert doc["format"] == "glassforge-trace" and len(doc["batches"][0]["steps"]) == 5
    folder = client.data / "explain" / explained["id"]
    with safe_open(str(folder / "trace.safetensors"), "pt") as f:
        assert doc["batches"][0]["steps"][2]["tensors"]["x_next"] in set(f.keys())
    assert (
        client.get(f"/api/v1/jobs/{explained['id']}/trace.safetensors").content
        == (folder / "trace.safetensors").read_bytes()
    )
    en = client.get(f"/api/v1/jobs/{explained['id']}/report").text
    ja = client.get(f"/api/v1/jobs/{explained['id']}/report", params={"lang": "ja"}).text
    assert '<html lang="en">' in en and '<html lang="ja">' in ja and PROMPT in en
    assert client.get(f"/api/v1/jobs/{explained['id']}/denoise.gif").content[:6] == b"GIF89a"


def test_explain_steps_match_the_trace(client, explained):
    job_id = explained["id"]
    doc = client.get(f"/api/v1/jobs/{job_id}/trace.json").json()
    first = client.get(f"/api/v1/jobs/{job_id}/steps", params={"since": 0, "limit": 3}).json()
    assert (first["recorded"], first["next"], first["done"], first["live"]) == (5, 3, False, False)
    rest = client.get(f"/api/v1/jobs/{job_id}/steps", params={"since": 3}).json()
    assert rest["done"] and rest["next"] == 5
    steps = first["steps"] + rest["steps"]
    for i, (step, recorded) in enumerate(zip(steps, doc["batches"][0]["steps"], strict=True)):
        assert step["i"] == i and step["total"] == 5 and step["sampler"] == "euler"
        assert step["sigma"] == recorded["sigma"] and step["sigma_next"] == recorded["sigma_next"]
        s, n = recorded["sigma"], recorded["sigma_next"]
        assert f"({n:.6g} − {s:.6g})" in step["filled"][1]  # Euler's update with this step's σ's
        assert step["x0"].startswith("data:image/png;base64,") and len(step["latent"]) == 4 == len(
            step["eps"]
        )
        att = step["attention"]
        assert (
            len(att["maps"]) == len(doc["attention"]["tokens"]) - 2
        )  # the words and EOS: no BOS, no padding
    assert steps[0]["check"].endswith("= 0")  # the update recomputed from the recorded inputs


def test_explain_overview(client, explained):
    job_id = explained["id"]
    o = client.get(f"/api/v1/jobs/{job_id}/explain").json()
    doc = client.get(f"/api/v1/jobs/{job_id}/trace.json").json()
    texts = [r["text"] for r in o["tokens"]["cond"] if r["kind"] == "token"]
    assert texts == [w + "</w>" for w in PROMPT.split()]
    assert [w["label"] for w in o["words"]] == [*PROMPT.split(), "EOS"]
    assert o["schedule"]["sigmas"] == doc["batches"][0]["sigmas"]
    assert len(o["pseudo"]["x"]) == 6 and len(o["pseudo"]["x0"]) == 5
    d = o["decode"]
    pixels = np.array(Image.open(io.BytesIO(client.get(explained["image_urls"][0]).content)))
    assert (
        d["bytes"] == pixels[d["pixel"][0], d["pixel"][1]].tolist()
    )  # the walk-through ends at the PNG's bytes
    assert set(o["files"]) == {"trace.json", "trace.safetensors", "denoise.gif", "report_en", "report_ja"}


def test_plain_job_has_no_explanation(client, plain):
    r = client.get(f"/api/v1/jobs/{plain['id']}/steps")
    assert r.status_code == 404 and "rerun" in r.json()["detail"]
    assert client.get(f"/api/v1/jobs/{plain['id']}/trace.json").status_code == 404


# ---------------------------------------------------------------- tokens, toy, workflow


def test_tokenize_counts_like_a1111(client):
    from glassforge.models.tokenizer import ClipTokenizer

    long = ", ".join(["a red circle on a blue background"] * 12)
    for prompt in ("", "(red:1.3) circle", long):
        r = client.get("/api/v1/tokenize", params={"prompt": prompt}).json()
        assert (r["count"], r["max"]) == ClipTokenizer("clip-l").token_counter(prompt)
        assert r["counter"] == f"{r['count']}/{r['max']}"
    r = client.get("/api/v1/tokenize", params={"prompt": long}).json()
    # 12 × (7 words + comma) − 1 = 95 tokens; the chunk fills at 75 and A1111 moves what follows the last
    # comma (token 72) to the next chunk: 72 + 23, counted as 75 + 23
    assert (r["count"], r["max"]) == (98, 150) and [c["tokens"] for c in r["chunks"]] == [72, 23]
    assert client.get("/api/v1/tokenize", params={"prompt": "(red:1.3) circle"}).json()["chunks"][0][
        "texts"
    ] == ["red", "circle"]


def test_toy_world(client):
    q = {"words": "dog,cat", "steps": 6, "seed": 5, "particles": 40, "sampler": "Euler"}
    a = client.get("/api/v1/toy", params=q).json()
    assert len(a["xs"]) == 7 and all(len(x) == 40 for x in a["xs"]) and len(a["steps"]) == 6
    assert a["prompt_words"] == {"dog": 1.0, "cat": 1.0} and a["seed"] == 5
    assert sum(a["end_fractions"].values()) == pytest.approx(1.0)
    s0, s1 = a["sigmas"][0], a["sigmas"][1]
    assert f"({s1:.6g} − {s0:.6g})" in a["steps"][0]["filled"][1]
    assert client.get("/api/v1/toy", params=q).json()["xs"] == a["xs"]  # the seed fixes the run
    bad = client.get("/api/v1/toy", params={**q, "words": "dog, unicorn"})
    assert bad.status_code == 422 and "unicorn" in bad.json()["detail"] and "cat" in bad.json()["detail"]
    assert client.get("/api/v1/toy", params={**q, "sampler": "nope"}).status_code == 422


def test_a_random_variation_seed_is_kept_with_the_job(client):
    """subseed −1 is resolved once: the job's workflow and "again" use the variation seed the image was made with."""
    r = client.post("/api/v1/jobs", json={**SMALL, "steps": 3, "subseed": -1, "subseed_strength": 0.5})
    job = wait(client, r.json()["id"])
    used = int(re.search(r"Variation seed: (\d+)", job["infotexts"][0]).group(1))
    graphs = [client.get(f"/api/v1/jobs/{job['id']}/workflow").json()["workflow"] for _ in range(2)]
    assert graphs[0]["7"]["inputs"]["subseed"] == graphs[1]["7"]["inputs"]["subseed"] == used


def test_workflow_of_a_job(client, explained):
    g = client.get(f"/api/v1/jobs/{explained['id']}/workflow").json()
    nodes = {n["id"]: n for n in g["nodes"]}
    assert [n["class_type"] for n in g["nodes"]] == ["CheckpointLoaderSimple", "CLIPSetLastLayer", "CLIPTextEncode",
                                                     "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage"]  # fmt: skip
    assert {n["status"] for n in g["nodes"]} == {"done"}
    assert nodes["7"]["widgets"]["seed"] == 1234 and nodes["7"]["widgets"]["steps"] == 5
    assert nodes["4"]["widgets"]["text"] == PROMPT and nodes["6"]["widgets"]["width"] == 32
    assert {"from": "7", "slot": 0, "to": "8", "input": "samples", "type": "LATENT"} in g["links"]
    assert len(g["links"]) == sum(
        isinstance(v, list) for n in g["workflow"].values() for v in n["inputs"].values()
    )
    form = client.post("/api/v1/workflow", json={**SMALL, "steps": 9}).json()
    assert form["job_status"] is None and {n["status"] for n in form["nodes"]} == {"idle"}
    assert form["workflow"]["7"]["inputs"]["steps"] == 9


# ---------------------------------------------------------------- bad input, the UI's files, the schema


BAD = [
    ("post", "/api/v1/jobs", {"prompt": "x", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ("post", "/api/v1/jobs", {"prompt": "x", "model": "nope"}, 404, "glassforge-shapes.safetensors"),
    ("post", "/api/v1/jobs", {"prompt": "x", "width": 100000}, 422, "width 100000 must be between 8 and 4096"),
    ("post", "/api/v1/explain", {"prompt": "x", "sampler_name": "Euler b"}, 422, "unknown sampler 'Euler b'"),
    ("post", "/api/v1/jobs", {"prompt": "x", "steps": "many"}, 422, "steps: Input should be a valid integer"),
    ("get", "/api/v1/jobs/nope", None, 404, "no job 'nope'"),
    ("get", "/api/v1/jobs/nope/images/0", None, 404, "no job 'nope'"),
    ("get", "/api/v1/jobs/..%2F..%2Fhistory/trace.json", None, 404, ""),
    ("get", "/api/v1/jobs/a.b/trace.json", None, 422, "letters, digits"),
    ("get", "/api/v1/toy?steps=0", None, 422, "steps"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "phrase"), BAD, ids=[f"{m} {u}" for m, u, *_ in BAD]
)
def test_bad_input(client, method, url, body, status, phrase):
    r = client.request(method.upper(), url, json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "detail"} and phrase in r.json()["detail"]


def test_web_ui_files_are_served_and_local(client):
    from glassforge.server.own_web import WEB_DIR

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="ui/js/app.js">' in page.text
    assert client.get("/ui/style.css").headers["content-type"].startswith("text/css")
    files = sorted(p for p in WEB_DIR.rglob("*") if p.is_file())
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), f"{path.name} loads something remote"
        assert "import(" not in text
        for target in re.findall(r'^import .* from "(\./[\w.]+)";$', text, flags=re.M):  # every module exists
            assert client.get(f"/ui/js/{target[2:]}").status_code == 200, (path.name, target)
    assert client.get("/nothing").json()["error"] == "NotFound"  # no catch-all page hides a 404


def test_openapi_documents_the_own_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/preview", "/api/v1/jobs/{job_id}/steps",
                  "/api/v1/explain", "/api/v1/history", "/api/v1/tokenize", "/api/v1/toy", "/api/v1/jobs/{job_id}/report",
                  "/api/v1/jobs/{job_id}/images/{k}", "/api/v1/jobs/{job_id}/rating", "/api/v1/jobs/{job_id}/workflow"):  # fmt: skip
        assert route in paths, route
    assert "202" in paths["/api/v1/jobs"]["post"]["responses"]
    assert json.dumps(paths).count("/api/jobs") == 0
