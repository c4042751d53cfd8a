"""glassforge serve, end to end: a real server on a loopback port (uvicorn in a thread, the embedded
model), driven by A1111's real client (``webuiapi``) and by httpx.

Oracles: the images are byte-for-byte the PNGs ``txt2img()`` + ``encode_image`` make for the same
parameters (what ``glassforge generate`` writes); the infotext in the PNG and in ``info`` is txt2img's.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from live_server import live_server

webuiapi = pytest.importorskip("webuiapi")

PROMPT = "a red circle on a blue background"
SMALL = {"width": 32, "height": 32, "steps": 4, "cfg_scale": 7.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with (
        live_server(tmp_path_factory.mktemp("server")) as srv,
        httpx.Client(base_url=srv.base, timeout=300) as client,
    ):
        yield SimpleNamespace(port=srv.port, app=srv.app, state=srv.state, http=client, data=srv.data)


@pytest.fixture(scope="module")
def api(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a", steps=4)


def reference(server, **kwargs):
    """txt2img() in this process on the server's own loaded model, and the PNG bytes it makes."""
    from glassforge.pngfile import encode_image, model_hash
    from glassforge.txt2img import Txt2ImgParams, txt2img

    managed = server.state.manager.get(None)
    with torch.inference_mode():
        result = txt2img(
            managed.model,
            Txt2ImgParams(**kwargs),
            model_name=managed.path.stem,
            model_hash=model_hash(managed.path),
        )
    pngs = [encode_image(im, text) for im, text in zip(result.images, result.infotexts, strict=True)]
    return result, pngs


def txt2img(server, **body):
    r = server.http.post("/sdapi/v1/txt2img", json={"prompt": PROMPT, **SMALL, **body})
    assert r.status_code == 200, r.text
    data = r.json()
    return data, json.loads(data["info"]), [base64.b64decode(b) for b in data["images"]]


# ---------------------------------------------------------------- the real client


def test_webuiapi_txt2img_equals_txt2img(server, api):
    result = api.txt2img(prompt=PROMPT, seed=1234, sampler_name="Euler a", **SMALL)
    ref, pngs = reference(server, prompt=PROMPT, seed=1234, sampler="Euler a", schedule="automatic", steps=4,
                          cfg_scale=7.0, width=32, height=32)  # fmt: skip
    assert base64.b64decode(result.json["images"][0]) == pngs[0]
    assert len(result.images) == 1
    assert result.images[0].info["parameters"] == ref.infotexts[0]
    assert "Sampler: Euler a" in ref.infotexts[0] and "Seed: 1234" in ref.infotexts[0]
    assert result.info["infotexts"] == ref.infotexts
    assert result.info["all_seeds"] == [1234] and result.info["seed"] == 1234
    assert result.info["sd_model_name"] == "glassforge-shapes"
    assert re.fullmatch(r"[0-9a-f]{32}", result.info["job_id"])
    assert result.parameters["prompt"] == PROMPT and result.parameters["seed"] == 1234


def test_webuiapi_lists_and_options(server, api):
    samplers = {s["name"]: s for s in api.get_samplers()}
    assert samplers["DPM++ 2M"]["options"] == {"scheduler": "karras"}
    assert "k_euler_a" in samplers["Euler a"]["aliases"]
    assert samplers["Euler a"]["options"] == {"uses_ensd": "True"}
    schedulers = {s["label"]: s for s in api.get_schedulers()}
    assert schedulers["Karras"] == {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
                                    "need_inner_model": False}  # fmt: skip
    assert schedulers["SGM Uniform"]["aliases"] == ["SGMUniform"]
    from glassforge.pngfile import sha256_file

    models = api.get_sd_models()
    digest = sha256_file(server.state.model_path(None))
    title = f"glassforge-shapes.safetensors [{digest[:10]}]"
    assert models[0] == {"title": title, "model_name": "glassforge-shapes", "hash": digest[:10], "sha256": digest,
                         "filename": str(server.state.model_path(None)), "config": None}  # fmt: skip
    assert api.util_get_model_names() == [title]
    assert api.get_options()["sd_model_checkpoint"] == title
    api.util_set_model(title)  # POST /options with sd_model_checkpoint: loads through the queue
    assert api.util_get_current_model() == title
    api.set_options({"CLIP_stop_at_last_layers": 2})
    try:
        assert api.get_options()["CLIP_stop_at_last_layers"] == 2
        _, info, _ = txt2img(server, seed=7)
        assert "Clip skip: 2" in info["infotexts"][0] and info["clip_skip"] == 2
    finally:
        api.set_options({"CLIP_stop_at_last_layers": 1})
    assert api.get_scripts() == {"txt2img": [], "img2img": []}
    assert api.get_memory()["ram"]["used"] > 0
    assert api.refresh_checkpoints() is None


# ---------------------------------------------------------------- batches, grid, png-info


def test_batches_and_grid_equal_txt2img(server):
    _, info, pngs = txt2img(server, seed=50, n_iter=2, sampler_name="DPM++ 2M", scheduler="Karras")
    ref, ref_pngs = reference(server, prompt=PROMPT, seed=50, batch_count=2, sampler="DPM++ 2M", schedule="Karras",
                              steps=4, cfg_scale=7.0, width=32, height=32)  # fmt: skip
    assert len(pngs) == 3 and info["index_of_first_image"] == 1  # A1111 puts the grid first
    assert pngs[1:] == ref_pngs
    assert info["all_seeds"] == [50, 51] and info["infotexts"][1:] == ref.infotexts
    grid = np.array(Image.open(io.BytesIO(pngs[0])))
    assert grid.shape == (32, 64, 3)
    assert np.array_equal(grid, np.concatenate([np.array(im) for im in ref.images], axis=1))


def test_png_info(server):
    _, info, pngs = txt2img(server, seed=99)
    r = server.http.post(
        "/sdapi/v1/png-info", json={"image": "data:image/png;base64," + base64.b64encode(pngs[0]).decode()}
    )
    assert r.status_code == 200
    out = r.json()
    assert out["info"] == info["infotexts"][0]
    assert out["parameters"]["Seed"] == "99" and out["parameters"]["Prompt"] == PROMPT
    assert server.http.post("/sdapi/v1/png-info", json={"image": ""}).json() == {
        "info": "",
        "items": {},
        "parameters": {},
    }
    bad = server.http.post("/sdapi/v1/png-info", json={"image": "not base64!"})
    assert bad.status_code == 422 and "base64" in bad.json()["detail"]


# ---------------------------------------------------------------- progress, interrupt, queue


def test_progress_preview_and_interrupt(server):
    idle = server.http.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.http.post, "/sdapi/v1/txt2img",
                              json={"prompt": PROMPT, "width": 32, "height": 32, "steps": 1000, "seed": 5,
                                    "sampler_name": "Euler"})  # fmt: skip
        for _ in range(3000):
            p = server.http.get("/sdapi/v1/progress").json()
            if p["state"]["sampling_step"] >= 2:
                break
            time.sleep(0.02)
        assert p["state"]["sampling_steps"] == 1000 and 0 < p["progress"] < 1
        preview = Image.open(io.BytesIO(base64.b64decode(p["current_image"])))
        assert preview.size == (32, 32)
        job = server.http.get(f"/api/v1/jobs/{p['state']['job_id']}").json()
        assert job["status"] == "running" and job["progress"]["total"] == 1000
        assert server.http.post("/sdapi/v1/interrupt").json() == {}
        r = pending.result()
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["status"] == "interrupted" and info["job_id"] == p["state"]["job_id"]
    assert len(r.json()["images"]) == 1  # A1111: the interrupted batch, decoded from its latest x0
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert image.size == (32, 32)
    assert image.info["parameters"] == info["infotexts"][0]
    assert "Steps: 1000, Sampler: Euler" in info["infotexts"][0] and "Seed: 5" in info["infotexts"][0]
    assert server.http.get(f"/api/v1/jobs/{info['job_id']}").json()["status"] == "interrupted"


def test_skip_ends_only_the_current_batch(server):
    body = {"prompt": PROMPT, "width": 32, "height": 32, "steps": 1000, "n_iter": 2, "seed": 70, "sampler_name": "Euler",
            "force_task_id": "skip-me"}  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.http.post, "/sdapi/v1/txt2img", json=body)
        wait_for(server, "skip-me", lambda j: j["status"] == "running" and j["progress"]["step"] >= 2)
        assert server.http.post("/sdapi/v1/skip").json() == {}
        job = wait_for(
            server, "skip-me", lambda j: j["progress"]["batch"] == 1 and j["progress"]["step"] >= 2
        )
        assert job["status"] == "running"  # the skip ended batch 0 only
        server.http.post("/sdapi/v1/interrupt")
        r = pending.result()
    info = json.loads(r.json()["info"])
    assert info["status"] == "interrupted" and info["all_seeds"] == [70, 71]
    assert len(r.json()["images"]) == 3  # the grid, then one image per batch, each cut short


def test_two_requests_queue_and_both_finish(server):
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(server.http.post, "/sdapi/v1/txt2img", json={"prompt": PROMPT, **SMALL, "seed": 11})
                   for _ in range(2)]  # fmt: skip
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200, 200]
    infos = [json.loads(r.json()["info"]) for r in responses]
    assert infos[0]["job_id"] != infos[1]["job_id"]
    assert responses[0].json()["images"] == responses[1].json()["images"]  # same seed, same bytes
    for info in infos:
        job = server.http.get(f"/api/v1/jobs/{info['job_id']}").json()
        assert job["status"] == "done" and job["progress"]["step"] == 4
        assert len(job["images"]) == 1


def wait_for(server, job_id, predicate):
    for _ in range(3000):
        r = server.http.get(f"/api/v1/jobs/{job_id}")
        if r.status_code == 200 and predicate(r.json()):
            return r.json()
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached the expected state")


def test_interrupt_queued_job_by_id(server):
    long_body = {"prompt": PROMPT, "width": 32, "height": 32, "steps": 1000, "sampler_name": "Euler"}
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(server.http.post, "/sdapi/v1/txt2img", json={**long_body, "force_task_id": "long-a"})
        wait_for(server, "long-a", lambda j: j["status"] == "running")
        b = pool.submit(
            server.http.post,
            "/sdapi/v1/txt2img",
            json={"prompt": PROMPT, **SMALL, "force_task_id": "queued-b"},
        )
        queued = wait_for(server, "queued-b", lambda j: True)
        assert queued["status"] == "pending" and queued["queue_position"] == 0
        again = server.http.post(
            "/sdapi/v1/txt2img", json={"prompt": PROMPT, **SMALL, "force_task_id": "long-a"}
        )
        assert again.status_code == 409 and "long-a" in again.json()["detail"]
        assert server.http.post("/api/v1/jobs/queued-b/interrupt").json()["status"] == "interrupted"
        rb = b.result()  # answered at once, while long-a still runs
        assert server.http.get("/api/v1/jobs/long-a").json()["status"] == "running"
        assert server.http.post("/api/v1/jobs/long-a/interrupt").status_code == 200
        ra = a.result()
    assert rb.status_code == 200 and rb.json()["images"] == []
    assert json.loads(rb.json()["info"])["status"] == "interrupted"
    assert ra.status_code == 200 and len(ra.json()["images"]) == 1
    assert json.loads(ra.json()["info"])["status"] == "interrupted"


# ---------------------------------------------------------------- bad input


BAD = [
    ({"sampler_name": "Euler b"}, 422, ["unknown sampler 'Euler b'", "Euler a", "DPM++ 2M"]),
    ({"scheduler": "karas"}, 422, ["unknown schedule 'karas'", "Karras"]),
    ({"width": 100}, 422, ["width 100 must be a positive multiple of 8"]),
    ({"width": "wide"}, 422, ["width: Input should be a valid integer", "'wide'"]),
    ({"width": 100000}, 422, ["width 100000 must be between 8 and 4096"]),
    ({"steps": 0}, 422, ["steps 0 must be between 1"]),
    ({"batch_size": 0}, 422, ["batch_size 0"]),
    ({"seed": -5}, 422, ["seed must be"]),
    ({"enable_hr": True}, 422, ["hires fix is not supported"]),
    ({"alwayson_scripts": {"ControlNet": {"args": []}}}, 422, ["no scripts are available", "ControlNet"]),
    ({"override_settings": {"sd_model_checkpoint": "nope.safetensors"}}, 404,
     ["no model 'nope.safetensors'", "glassforge-shapes.safetensors"]),
    ({"override_settings": {"CLIP_stop_at_last_layers": 0}}, 422, ["CLIP_stop_at_last_layers", "between 1 and 12"]),
    ({"prompt": "a cat AND a dog"}, 422, ["'AND'"]),  # found by the worker: the job fails, the worker goes on
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "phrases"), BAD, ids=[str(b)[:40] for b, _, _ in BAD])
def test_bad_input(server, body, status, phrases):
    r = server.http.post("/sdapi/v1/txt2img", json={"prompt": PROMPT, **SMALL, **body})
    assert r.status_code == status, r.text
    out = r.json()
    assert set(out) == {"error", "detail"} and isinstance(out["detail"], str)
    for phrase in phrases:
        assert phrase in out["detail"]


def test_bad_bodies_and_server_still_serves(server):
    r = server.http.post(
        "/sdapi/v1/txt2img", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = server.http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "missing"})
    assert r.status_code == 404 and "glassforge-shapes.safetensors" in r.json()["detail"]
    r = server.http.post("/sdapi/v1/options", json={"randn_source": "GPU"})
    assert r.status_code == 422 and "CPU" in r.json()["detail"]
    assert server.http.get("/sdapi/v1/nothing").status_code == 404
    assert server.http.post("/sdapi/v1/img2img", json={}).status_code == 501
    _, info, pngs = txt2img(server, seed=3)  # the worker survived the failed job above
    assert info["status"] == "done" and len(pngs) == 1


# ---------------------------------------------------------------- history and metrics


def test_history_search_and_rating(server):
    _, info, pngs = txt2img(server, prompt="a green triangle", seed=21, sampler_name="Euler")
    job_id = info["job_id"]
    rows = server.http.get("/api/v1/history", params={"q": "green triangle"}).json()["rows"]
    assert [r["id"] for r in rows] == [job_id]
    row = rows[0]
    assert row["status"] == "done" and row["sampler"] == "Euler" and row["model"] == "glassforge-shapes"
    assert row["seed"] == 21 and row["infotexts"] == info["infotexts"] and row["rating"] is None
    assert Path(row["images"][0]).read_bytes() == pngs[0]
    assert row["params"]["prompt"] == "a green triangle"
    by_sampler = server.http.get("/api/v1/history", params={"sampler": "k_euler"}).json()["rows"]
    assert job_id in [r["id"] for r in by_sampler] and {r["sampler"] for r in by_sampler} == {"Euler"}
    assert job_id in [
        r["id"]
        for r in server.http.get("/api/v1/history", params={"model": "glassforge-shapes.safetensors"}).json()[
            "rows"
        ]
    ]
    assert server.http.get("/api/v1/history", params={"model": "other"}).json()["total"] == 0
    r = server.http.post(f"/api/v1/jobs/{job_id}/rating", json={"rating": 1, "note": "clean edges"})
    assert r.status_code == 200
    rated = server.http.get("/api/v1/history", params={"rating": 1}).json()["rows"]
    assert [(r["id"], r["note"]) for r in rated] == [(job_id, "clean edges")]
    assert server.http.post(f"/api/v1/jobs/{job_id}/rating", json={"rating": 5}).status_code == 422
    assert server.http.post("/api/v1/jobs/nope/rating", json={"rating": 1}).status_code == 404
    failed = server.http.get("/api/v1/history", params={"status": "error"}).json()["rows"]
    assert failed and all(r["error"] for r in failed)


def test_metrics_count_jobs(server):
    txt2img(server, seed=1)
    jobs = server.http.get("/api/v1/jobs").json()["jobs"]
    text = server.http.get("/metrics").text
    metrics = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    for status in ("done", "error", "interrupted"):
        count = sum(j["kind"] == "txt2img" and j["status"] == status for j in jobs)
        assert float(metrics[f'glassforge_jobs_total{{kind="txt2img",status="{status}"}}']) == count
    assert float(metrics["glassforge_queue_length"]) == 0
    steps = sum(j["steps_done"] for j in jobs)
    assert float(metrics["glassforge_sampling_steps_total"]) == steps
    assert float(metrics["glassforge_step_seconds_count"]) == steps
    assert float(metrics["glassforge_steps_per_second"]) > 0


def test_history_marks_jobs_of_a_killed_server_failed(tmp_path):
    from glassforge.server.history import History
    from glassforge.server.jobs import Job

    db = History(tmp_path / "history.sqlite3")
    job = Job(kind="txt2img", params={"prompt": "x"}, run=lambda job: None)
    job.status, job.record["images"] = "running", [str(tmp_path / "00000-1.png")]
    db.record(job)
    db.close()  # the process dies here; a new server opens the same file
    reopened = History(tmp_path / "history.sqlite3")
    assert reopened.mark_unfinished() == 1
    row = reopened.get(job.id)
    assert row["status"] == "error" and "stopped" in row["error"]
    assert row["images"] == [str(tmp_path / "00000-1.png")] and row["params"] == {"prompt": "x"}
    assert reopened.mark_unfinished() == 0
