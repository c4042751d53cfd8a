"""What glassforge's own API routes share: the job request, submitting, the views of jobs and rows.

Kept apart from the route modules (:mod:`.own`, :mod:`.own_explain`, :mod:`.own_tools`): they all import
this one, and only :mod:`.own` imports the other two (to include their routers), so any of them can be
imported first.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from .jobs import FINISHED, Job
from .state import ApiError, ServerState

API = "/api/v1"


def get_state(request: Request) -> ServerState:
    return request.app.state.glassforge


# ---------------------------------------------------------------- jobs that time their steps


@dataclass(eq=False)
class TimedJob(Job):
    """A job that notes when each sampler step ended, for seconds per step and the ETA."""

    step_times: deque = field(default_factory=lambda: deque(maxlen=16))

    def step_listener(self, on_step=None):
        def stamp(event) -> None:
            self.step_times.append((self.progress.batch, time.perf_counter()))
            if on_step is not None:
                on_step(event)

        return super().step_listener(stamp)

    def seconds_per_step(self) -> float | None:
        times = list(self.step_times)
        if len(times) < 2:
            return None
        return (times[-1][1] - times[0][1]) / (len(times) - 1)


def speed(job: Job) -> dict[str, Any]:
    """``s_per_it`` (seconds per sampler step), ``it_per_s`` and ``eta`` (seconds left) of a job."""
    pr = job.progress
    timed = isinstance(job, TimedJob)
    per = job.seconds_per_step() if timed else None
    if not timed and job.status not in FINISHED and pr.started and pr.step:  # includes the model load
        done = pr.batch * pr.total + pr.step
        per = (time.time() - pr.started) / done if done else None
    eta = pr.eta
    if per is not None and job.status not in FINISHED:
        eta = ((pr.total - pr.step) + max(0, pr.batches - pr.batch - 1) * pr.total) * per
    if job.status in FINISHED:
        eta = 0.0
    return {
        "s_per_it": None if per is None else round(per, 4),
        "it_per_s": None if not per else round(1 / per, 3),
        "eta": None if eta is None else round(eta, 2),
    }


# ---------------------------------------------------------------- views


def image_urls(job_id: str, count: int) -> list[str]:
    return [f"{API}/jobs/{job_id}/images/{k}" for k in range(count)]


def job_view(state: ServerState, job: Job) -> dict[str, Any]:
    out = job.summary()
    out["progress"].update(speed(job))
    rec = job.record
    out.update(
        params=job.params,
        queue_position=state.queue.position(job),
        model=rec.get("model"),
        sampler=rec.get("sampler"),
        prompt=rec.get("prompt"),
        negative_prompt=rec.get("negative_prompt"),
        seed=rec.get("seed"),
        images=[str(p) for p in rec.get("images", [])],
        infotexts=list(rec.get("infotexts", [])),
        steps_done=rec.get("steps_done", 0),  # sampler steps run, all batches together
    )
    out["image_urls"] = image_urls(job.id, len(out["images"]))
    return out


def row_view(row: dict[str, Any]) -> dict[str, Any]:
    """A history row with its image URLs (the row's ``images`` are file paths)."""
    return {**row, "image_urls": image_urls(row["id"], len(row.get("images") or []))}


def find_job(state: ServerState, job_id: str) -> Job:
    job = state.queue.get(job_id)
    if job is None:
        raise ApiError(
            404, f"no job {job_id!r} is queued or running in this server (GET {API}/jobs lists them)"
        )
    return job


def job_or_row(state: ServerState, job_id: str) -> tuple[Job | None, dict[str, Any] | None]:
    """The live job (None if this process does not hold it) and else its history row; 404 if neither."""
    job = state.queue.get(job_id)
    if job is not None:
        return job, None
    row = state.history.get(job_id)
    if row is None:
        raise ApiError(404, f"no job {job_id!r} (neither in this server's queue nor in the history)")
    return None, row


# ---------------------------------------------------------------- submitting


class JobRequest(BaseModel):
    """A txt2img job in A1111's field names (``sampler_name``, ``n_iter`` = batch count …); unknown
    fields are refused. ``width``/``height`` default to the model's own size, ``model`` to the
    server's current model."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = ""
    negative_prompt: str = ""
    model: str | None = Field(None, description="checkpoint file name or stem; default: the current model")
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    width: int | None = None
    height: int | None = None
    batch_size: int = 1
    n_iter: int = 1
    clip_skip: int | None = Field(None, description="1 = last layer; default: the server's setting")


def default_size(state: ServerState, model: str | None) -> int:
    """A model's native image size without loading it: the loaded model's, else the file's
    ``modelspec.resolution``, else its family's (512 / 768 / 1024)."""
    path = state.model_path(model).resolve()
    for entry in state.manager.loaded():
        if entry.path.resolve() == path:
            return int(entry.model.default_size)
    return _file_size(str(path), path.stat().st_mtime_ns if path.is_file() else 0)


@functools.lru_cache(maxsize=64)
def _file_size(path: str, mtime_ns: int) -> int:
    if not path.endswith(".safetensors"):
        return 512
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
    except Exception:
        return 512
    w, _, h = meta.get("modelspec.resolution", "").lower().partition("x")
    if w.isdigit() and w == h:
        return int(w)
    arch = meta.get("modelspec.architecture", "")
    return 1024 if "xl" in arch else 768 if "v2" in arch else 512


def form_params(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A job's parameters as a :class:`JobRequest` (from ours or from an A1111 request), with the seed
    the job resolved: what "generate again" and "send to form" use."""
    fields = JobRequest.model_fields
    out = {k: params[k] for k in fields if params.get(k) is not None}
    overrides = params.get("override_settings") or {}
    out.setdefault("model", overrides.get("sd_model_checkpoint") or record.get("model"))
    if "clip_skip" not in out and "CLIP_stop_at_last_layers" in overrides:
        out["clip_skip"] = overrides["CLIP_stop_at_last_layers"]
    if "sampler_name" not in out and (params.get("sampler_index") or record.get("sampler")):
        out["sampler_name"] = params.get("sampler_index") or record.get("sampler")
    if record.get("seed") is not None:
        out["seed"] = record["seed"]
    return {k: v for k, v in out.items() if v is not None}


def prepare(state: ServerState, req: JobRequest):
    """(Txt2ImgSpec, params to store): the request checked (bounds, names, model) by the A1111 path."""
    from .a1111_request import Txt2ImgRequest, to_spec

    size = default_size(state, req.model)
    overrides: dict[str, Any] = {}
    if req.model:
        overrides["sd_model_checkpoint"] = req.model
    if req.clip_skip is not None:
        overrides["CLIP_stop_at_last_layers"] = req.clip_skip
    a1111 = Txt2ImgRequest(
        prompt=req.prompt, negative_prompt=req.negative_prompt, seed=req.seed, subseed=req.subseed,
        subseed_strength=req.subseed_strength, sampler_name=req.sampler_name, scheduler=req.scheduler,
        steps=req.steps, cfg_scale=req.cfg_scale, width=req.width or size, height=req.height or size,
        batch_size=req.batch_size, n_iter=req.n_iter, override_settings=overrides or None,
    )  # fmt: skip
    spec = to_spec(state, a1111)
    params = req.model_dump()
    params.update(width=a1111.width, height=a1111.height, model=req.model or state.current_model)
    return spec, params


def submit(state: ServerState, kind: str, params: dict[str, Any], spec, run) -> Job:
    from ..sampling.names import resolve_sampler

    p = spec.params
    params = {**params, "subseed": p.subseed}  # the variation seed to be used (−1 already resolved)
    job = TimedJob(kind=kind, params=params, run=run)
    job.record.update(prompt=p.prompt, negative_prompt=p.negative_prompt, seed=p.seed,
                      sampler=resolve_sampler(p.sampler)[0].name)  # fmt: skip
    try:
        state.queue.submit(job)
    except RuntimeError as e:
        raise ApiError(503, str(e), kind="Unavailable") from None
    return job
