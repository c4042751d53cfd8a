"""Explain jobs: txt2img with the explainer's recorder listening, live step data while it runs, and the
trace files and report afterwards.

* ``POST /api/v1/explain`` — like ``POST /api/v1/jobs``; the job records every number of the run
  (:class:`~glassforge.explain.recorder.TraceRecorder`, per-word cross-attention maps) and writes into
  ``<data>/explain/<job id>/``: ``image-<k>.png``, ``trace.json``, ``trace.safetensors``, ``denoise.gif``,
  ``index.html`` (English) and ``index.ja.html`` (Japanese) — what ``glassforge explain`` writes.
* ``POST /api/v1/jobs/{id}/rerun`` — run a job's parameters again (its resolved seed), ``{"explain": true}``
  to explain a plain job.
* ``GET /api/v1/jobs/{id}/steps?since=N&limit=&batch=&lang=`` — the recorded sampler steps from ``N`` on,
  while the job runs and after: σ, the formula filled in with the step's numbers, the worked elements,
  pictures of the latent, x0, ε, cond/uncond (data URLs) and the per-word attention maps.
* ``GET /api/v1/jobs/{id}/explain?batch=`` — the rest of the explanation: tokens, σ schedule,
  pseudo-space path, decode numbers, file links.
* ``GET /api/v1/jobs/{id}/trace.json``, ``/trace.safetensors``, ``/denoise.gif``, ``/report?lang=en|ja``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from .jobs import FINISHED
from .own_common import API, JobRequest, form_params, get_state, job_or_row, job_view, prepare, submit
from .own_explain_run import REPORTS, ExplainStore, explain_folder, get_store, run_explain
from .state import ApiError, ServerState

router = APIRouter(tags=["glassforge API: explain"])


@router.post(f"{API}/explain", status_code=202)
def submit_explain(req: JobRequest, request: Request) -> dict[str, Any]:
    """Queue an explain job (txt2img with the recorder) and answer at once with its id."""
    state = get_state(request)
    spec, params = prepare(state, req)
    return _queue_explain(state, get_store(request), spec, params)


def _queue_explain(state: ServerState, store: ExplainStore, spec, params) -> dict[str, Any]:
    def run(job):
        return run_explain(state, spec, job, explain_folder(state, job.id), store)

    return job_view(state, submit(state, "explain", params, spec, run))


class Rerun(BaseModel):
    explain: bool = False


@router.post(f"{API}/jobs/{{job_id}}/rerun", status_code=202)
def rerun(job_id: str, body: Rerun, request: Request) -> dict[str, Any]:
    """Run a job's parameters again with its resolved seed (the same image); ``explain`` records it."""
    from .generation import run_txt2img

    state = get_state(request)
    job, row = job_or_row(state, job_id)
    kind = job.kind if job is not None else row["kind"]
    if kind not in ("txt2img", "explain"):
        raise ApiError(
            422, f"job {job_id} is a {kind} job; only txt2img and explain jobs can be run again here"
        )
    form = form_params(job.params if job else row["params"], job.record if job else row)
    spec, params = prepare(state, JobRequest(**form))
    if body.explain:
        return _queue_explain(state, get_store(request), spec, params)
    new = submit(state, "txt2img", params, spec, lambda j: run_txt2img(state, spec, j))
    return job_view(state, new)


# ---------------------------------------------------------------- reading an explanation


@dataclass
class Source:
    trace: Any
    model: Any | None  # None: pictures come from the latent → RGB projection
    live: bool  # the job is still running
    count: int  # steps ready in the asked batch
    status: str
    folder: Path


def source(state: ServerState, store: ExplainStore, job_id: str, n: int) -> Source:
    job, row = job_or_row(state, job_id)
    status = job.status if job is not None else row["status"]
    folder = explain_folder(state, job_id)
    live, running = store.get_live(job_id), status not in FINISHED
    on_disk = (folder / "trace.json").is_file()
    if live is not None and (running or not on_disk):
        trace = live.trace()
        return Source(trace, live.model, running, min(live.count(n), _steps(trace, n)), status, folder)
    if on_disk:
        trace = store.trace(folder)
        if not 0 <= n < len(trace.doc["batches"]):
            raise ApiError(404, f"batch {n}: job {job_id} has batches 0 … {len(trace.doc['batches']) - 1}")
        return Source(trace, _loaded_model(state, trace), running, len(trace.steps(n)), status, folder)
    kind = job.kind if job is not None else row["kind"]
    if kind == "explain" and status not in FINISHED:
        return Source(None, None, True, 0, status, folder)  # queued: nothing recorded yet
    raise ApiError(
        404,
        f"job {job_id} ({kind}, {status}) has no recorded explanation; "
        f'POST {API}/jobs/{job_id}/rerun with {{"explain": true}} runs it again with the recorder',
    )


def _steps(trace, n: int) -> int:
    batches = trace.doc["batches"]
    return len(batches[n]["steps"]) if n < len(batches) else 0


def _loaded_model(state: ServerState, trace):
    name = trace.model.get("name")
    for entry in state.manager.loaded():
        if entry.path.stem == name:
            return entry.model
    return None


def data_uri(image) -> str:
    """PNG for small pictures, JPEG above 128×128 pixels (the live view's pictures stay light)."""
    buf = io.BytesIO()
    small = image.width * image.height <= 128 * 128
    image.convert("RGB").save(buf, "PNG" if small else "JPEG", quality=85)
    kind = "png" if small else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _picture(src: Source, latent):
    """A [C, h, w] latent as a picture: the VAE when the model is at hand and small, else latent → RGB."""
    import numpy as np
    from PIL import Image

    from ..explain.pictures import Previewer
    from ..models.vae import latent_preview

    if src.model is not None:
        return Previewer(src.model, "auto")(latent)
    rgb = latent_preview(latent[None].float(), src.trace.model.get("family", "sd1"))[0]
    return Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8), "RGB")


def render_step(src: Source, i: int, n: int, lang: str, b: int = 0) -> dict[str, Any]:
    """Step ``i`` of batch ``n`` for the Explain page (image ``b``)."""
    import torch

    from ..explain import attention
    from ..explain.i18n import strings
    from ..explain.pictures import channel_images, png_uri
    from ..explain.walk import fmt, step_walk

    trace, s = src.trace, strings(lang)
    step = trace.steps(n)[i]
    with torch.inference_mode():
        walk = step_walk(trace, i, b=b, n=n)
        sigma = float(step["sigma"])
        x = trace.step_tensor(step, "x")[b].float()
        g = trace.guidance(step, n)
        guided = (trace.t(g[0]["tensors"]["guided"]) if g else trace.step_tensor(step, "denoised"))[b].float()
        eps = (x - guided) / sigma if sigma > 0 else guided * 0
        cond = uncond = None
        if g and g[0]["tensors"]["uncond"] is not None:
            cond = data_uri(_picture(src, trace.t(g[0]["tensors"]["cond"])[b].float()))
            uncond = data_uri(_picture(src, trace.t(g[0]["tensors"]["uncond"])[b].float()))
        x0 = data_uri(_picture(src, guided))
        att = attention.step_data(trace, i, s, n, b) if trace.attention else None
    return {
        "i": i,
        "batch": n,
        "total": int(step["total"]),
        "sampler": step["sampler"],
        "sigma": _num(sigma),
        "sigma_next": _num(step["sigma_next"]),
        "timestep": _num(walk.timestep),
        "formula": step["formula"],
        "terms": {k: _num(v) for k, v in walk.terms.items()},
        "filled": walk.filled,
        "elements": [{"at": list(e), "lines": lines} for e, lines in walk.elements],
        "check": None if walk.check is None else s["e_check"].format(check=f"{walk.check:.3g}"),
        "stats": [[s.get("stat_" + k, k), fmt(v)] for k, v in walk.stats.items()],
        "latent": [png_uri(im) for im in channel_images(x / math.sqrt(1 + sigma * sigma), 3.0)],
        "eps": [png_uri(im) for im in channel_images(eps, 3.0)],
        "x0": x0,
        "cond": cond,
        "uncond": uncond,
        "cfg_scale": _num(g[0]["scale"]) if g else None,
        "attention": att,
    }


def _num(v) -> float | str | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


@router.get(f"{API}/jobs/{{job_id}}/steps")
async def job_steps(
    job_id: str,
    request: Request,
    since: int = Query(0, ge=0),
    limit: int = Query(8, ge=1, le=100),
    batch: int = Query(0, ge=0),
    lang: str = Query("en", pattern="^(en|ja)$"),
) -> dict[str, Any]:
    """Recorded steps ``since`` … ``since + limit − 1`` of a batch, live while the job runs.

    Poll with ``since = next`` until ``done`` is true (the job finished and no step is left)."""
    state, store = get_state(request), get_store(request)
    src = source(state, store, job_id, batch)
    upto = min(src.count, since + limit)

    def make() -> list[dict[str, Any]]:
        return [
            store.rendered_step((job_id, batch, i, lang), lambda i=i: render_step(src, i, batch, lang))
            for i in range(since, upto)
        ]

    steps = await asyncio.to_thread(make) if upto > since else []
    total = None
    if src.trace is not None and src.count:
        total = int(src.trace.steps(batch)[0]["total"])
    return {
        "id": job_id,
        "status": src.status,
        "live": src.live,
        "batch": batch,
        "total": total,
        "recorded": src.count,
        "next": upto,
        "done": not src.live and upto >= src.count,
        "steps": steps,
    }


@router.get(f"{API}/jobs/{{job_id}}/explain")
async def job_explanation(
    job_id: str, request: Request, batch: int = Query(0, ge=0), lang: str = Query("en", pattern="^(en|ja)$")
) -> dict[str, Any]:
    """Everything but the steps: tokens, words with attention maps, σ schedule, pseudo-space, decode."""
    state, store = get_state(request), get_store(request)
    src = source(state, store, job_id, batch)
    out: dict[str, Any] = {
        "id": job_id,
        "status": src.status,
        "live": src.live,
        "batch": batch,
        "recorded": src.count,
    }
    files = {name: f"{API}/jobs/{job_id}/{name}" for name in ("trace.json", "trace.safetensors", "denoise.gif")
             if (src.folder / name).is_file()}  # fmt: skip
    files.update({f"report_{k}": f"{API}/jobs/{job_id}/report?lang={k}" for k, v in REPORTS.items()
                  if (src.folder / v).is_file()})  # fmt: skip
    out["files"] = files
    if src.trace is not None:
        out.update(await asyncio.to_thread(_overview, src, batch))
    return out


def _overview(src: Source, n: int) -> dict[str, Any]:
    import torch

    from ..explain import attention, facts

    trace = src.trace
    out: dict[str, Any] = {
        "params": trace.params,
        "model": {k: v for k, v in trace.model.items() if k != "schedule"},
    }
    if trace.prompt is not None:
        out["tokens"] = {
            side: [dataclasses.asdict(r) for r in facts.shown_rows(facts.token_rows(trace.prompt[side]))]
            for side in ("cond", "uncond")
        }
    out["words"] = [{"label": attention.label(r), "kind": r["kind"]} for r in attention.words(trace)]
    try:
        out["first_word"] = attention.strongest_word(trace, n) if out["words"] else None
    except (TypeError, IndexError):  # the newest step's maps are being written
        out["first_word"] = 0
    batches = trace.doc["batches"]
    out["batches"] = max(len(batches), 1)
    if src.count == 0:
        return out
    steps = trace.steps(n)[: src.count]
    batch = batches[n]
    if "sigmas" in batch:
        name, formula = facts.schedule_formula(trace, n)
        out["schedule"] = {"sigmas": [_num(s) for s in batch["sigmas"]], "name": name, "formula": formula,
                           "timesteps": [_num(t) for t in batch["timesteps"]]}  # fmt: skip
    else:  # still sampling: the σ's the steps so far went through
        out["schedule"] = {"sigmas": [_num(s["sigma"]) for s in steps] + [_num(steps[-1]["sigma_next"])],
                           "name": "", "formula": "", "timesteps": []}  # fmt: skip
    with torch.inference_mode():
        sub = type(trace)({**trace.doc, "batches": [*batches[:n], {**batch, "steps": steps}]}, trace.tensors)
        out["pseudo"] = facts.pseudo_space(sub, n)
        if "decoded" in batch:
            d = facts.decode(trace, n)
            out["decode"] = {k: d[k] for k in ("scale_factor", "latent_shape", "pixel_shape", "min", "max",
                                               "clamped_share", "pixel", "rgb", "halves", "clamped", "bytes")}  # fmt: skip
    return out


# ---------------------------------------------------------------- files


def _file(state: ServerState, job_id: str, name: str) -> Path:
    path = explain_folder(state, job_id) / name
    if not path.is_file():
        raise ApiError(404, f"job {job_id} has no {name} (only finished explain jobs do)")
    return path


@router.get(f"{API}/jobs/{{job_id}}/trace.json")
def trace_json(job_id: str, request: Request) -> FileResponse:
    return FileResponse(_file(get_state(request), job_id, "trace.json"), media_type="application/json")


@router.get(f"{API}/jobs/{{job_id}}/trace.safetensors")
def trace_tensors(job_id: str, request: Request) -> FileResponse:
    path = _file(get_state(request), job_id, "trace.safetensors")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{job_id}-trace.safetensors")


@router.get(f"{API}/jobs/{{job_id}}/denoise.gif")
def denoise_gif(job_id: str, request: Request) -> FileResponse:
    return FileResponse(_file(get_state(request), job_id, "denoise.gif"), media_type="image/gif")


@router.get(f"{API}/jobs/{{job_id}}/report", response_class=HTMLResponse)
def report(job_id: str, request: Request, lang: str = Query("en", pattern="^(en|ja)$")) -> FileResponse:
    """The explainer's self-contained ``index.html`` for a finished explain job."""
    return FileResponse(_file(get_state(request), job_id, REPORTS[lang]), media_type="text/html")
