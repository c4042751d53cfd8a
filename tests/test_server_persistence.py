"""A restart loses nothing: ``glassforge serve`` as a real process, killed (SIGKILL) in the middle of a
job, then started again on the same data folder.

The job being killed makes several images one after the other; the kill comes once the first one is on
disk and listed in the history. After the restart: that job is ``error`` with the reason, its finished
image is byte for byte what ``txt2img()`` makes for the same parameters (so it was written whole) and is
still served; the job queued behind it is ``error`` too; an earlier finished job, its rating and its image
are untouched; every PNG in the output folder is listed by a history row; and a new job runs without
overwriting anything.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

PNG = b"\x89PNG\r\n\x1a\n"
BASE = {"negative_prompt": "", "sampler_name": "Euler", "cfg_scale": 7.0, "width": 32, "height": 32}
EARLIER = {**BASE, "prompt": "a blue square", "seed": 11, "steps": 4}
KILLED = {**BASE, "prompt": "a red circle on a green background", "seed": 22, "steps": 12, "n_iter": 6}
QUEUED = {**BASE, "prompt": "a yellow triangle", "seed": 33, "steps": 4}
AFTER = {**BASE, "prompt": "a purple star", "seed": 44, "steps": 4}


class Server:
    """``python -m glassforge.cli serve --port 0`` (the OS picks the port; read back from uvicorn's log)."""

    def __init__(self, data: Path, log: Path):
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # one core, like the tests
        command = [sys.executable, "-m", "glassforge.cli", "serve", "--port", "0", "--data", str(data),
                   "--device", "cpu", "--precision", "fp32"]  # fmt: skip
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        port = None
        while port is None:
            if self.proc.poll() is not None:
                pytest.fail(f"glassforge serve exited with {self.proc.returncode}:\n{log.read_text()}")
            m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
            port = int(m.group(1)) if m else time.sleep(0.1)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        assert self.http.get("/health").json()["status"] == "ok"

    def submit(self, body: dict) -> str:
        response = self.http.post("/api/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def wait(self, job_id: str) -> dict:
        while (job := self.http.get(f"/api/v1/jobs/{job_id}").json())["status"] in ("pending", "running"):
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        return job

    def row(self, job_id: str) -> dict:
        """The job's row as the history database has it (not the in-memory job)."""
        found = self.http.get("/api/v1/history", params={"limit": 1000}).json()["rows"]
        [row] = [r for r in found if r["id"] == job_id]
        return row

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.http.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()


@pytest.fixture
def servers():
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def pngs(data: Path) -> dict[str, bytes]:
    """Every visible PNG under the output folder (hidden temporary files are not images)."""
    return {
        str(p): p.read_bytes()
        for p in sorted((data / "outputs").rglob("*.png"))
        if not p.name.startswith(".")
    }


def reference(body: dict, seed: int) -> bytes:
    """The PNG ``txt2img()`` + ``encode_image`` make in this process for one image of ``body``."""
    from glassforge.models.locate import model_folders
    from glassforge.models.manager import ModelManager
    from glassforge.models.runtime import resolve_runtime
    from glassforge.pngfile import encode_image
    from glassforge.txt2img import Txt2ImgParams, txt2img

    manager = ModelManager(folders=model_folders([]), runtime=resolve_runtime("cpu", "fp32"), max_models=1)
    managed = manager.get(None)
    params = Txt2ImgParams(
        prompt=body["prompt"], negative_prompt=body["negative_prompt"], seed=seed, sampler=body["sampler_name"],
        steps=body["steps"], cfg_scale=body["cfg_scale"], width=body["width"], height=body["height"],
    )  # fmt: skip
    with torch.inference_mode():
        result = txt2img(managed.model, params, model_name=managed.path.stem, model_hash=managed.hash)
    return encode_image(result.images[0], result.infotexts[0])


def test_killed_mid_job_restart_loses_nothing(tmp_path, servers):
    from glassforge.pngfile import read_infotext

    data = tmp_path / "data"
    first = Server(data, tmp_path / "first.log")
    servers.append(first)

    earlier = first.submit(EARLIER)
    assert first.wait(earlier)["status"] == "done"
    assert (
        first.http.post(f"/api/v1/jobs/{earlier}/rating", json={"rating": 1, "note": "keep"}).status_code
        == 200
    )
    earlier_row = first.row(earlier)

    killed = first.submit(KILLED)
    queued = first.submit(QUEUED)
    while not (row := first.row(killed))["images"]:  # the first image is saved and the history lists it
        assert row["status"] in ("pending", "running"), f"the job ended before the kill: {row}"
        assert first.proc.poll() is None, first.log.read_text()
        time.sleep(0.05)
    assert row["status"] == "running", f"the job ended before the kill: {row}"
    assert Path(row["images"][0]).is_file()
    first.kill()
    on_disk = pngs(data)

    second = Server(data, tmp_path / "second.log")
    servers.append(second)

    # the killed job: failed, with the reason, and its finished images kept
    job = second.http.get(f"/api/v1/jobs/{killed}").json()
    assert job["status"] == "error"
    assert "stopped" in job["error"] and "while the job was running" in job["error"]
    assert job["finished"] is not None and job["prompt"] == KILLED["prompt"] and job["seed"] == 22
    assert 1 <= len(job["images"]) < KILLED["n_iter"]
    assert len(job["infotexts"]) == len(job["images"])
    for k, path in enumerate(job["images"]):
        content = Path(path).read_bytes()
        assert content == on_disk[path]
        served = second.http.get(f"/api/v1/jobs/{killed}/images/{k}")
        assert served.status_code == 200 and served.content == content
        with Image.open(io.BytesIO(content)) as image:
            image.verify()  # chunk CRCs: the file is whole
        assert read_infotext(io.BytesIO(content)) == job["infotexts"][k]
        assert f"Seed: {22 + k}," in job["infotexts"][k]
    assert Path(job["images"][0]).read_bytes() == reference(KILLED, 22)

    # the job queued behind it: failed, no images
    behind = second.http.get(f"/api/v1/jobs/{queued}").json()
    assert behind["status"] == "error" and "still queued" in behind["error"] and behind["images"] == []

    # the earlier job: untouched, rating included
    row = second.row(earlier)
    assert {k: row[k] for k in ("status", "images", "infotexts", "rating", "note", "seed", "finished")} == {
        k: earlier_row[k] for k in ("status", "images", "infotexts", "rating", "note", "seed", "finished")
    }
    assert (row["status"], row["rating"], row["note"]) == ("done", 1, "keep")
    [earlier_png] = row["images"]
    assert second.http.get(f"/api/v1/jobs/{earlier}/images/0").content == on_disk[earlier_png]
    assert on_disk[earlier_png] == reference(EARLIER, 11)

    # every image on disk is listed by a row: nothing orphaned, nothing missing
    assert sorted(on_disk) == sorted([earlier_png, *job["images"]])
    failed = second.http.get("/api/v1/history", params={"status": "error"}).json()
    assert failed["total"] == 2 and {r["id"] for r in failed["rows"]} == {killed, queued}

    # a new job runs and overwrites nothing
    after = second.submit(AFTER)
    done = second.wait(after)
    assert done["status"] == "done", done["error"]
    [new_png] = done["images"]
    assert new_png not in on_disk and Path(new_png).read_bytes()[:8] == PNG
    now = pngs(data)
    assert {p: hashlib.sha256(b).digest() for p, b in now.items() if p != new_png} == {
        p: hashlib.sha256(b).digest() for p, b in on_disk.items()
    }
