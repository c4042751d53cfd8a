"""glassforge's own API under ``/api/v1``: jobs with ids (what A1111's API lacks), images, the history
with ratings, the lists the web UI needs, and the prompt's token count.

* ``POST /api/v1/jobs`` — submit a txt2img job (A1111-like fields); answers ``202 {id, ...}`` at once.
* ``GET /api/v1/jobs[?status=]`` — jobs this server process knows (queued, running, recent), oldest first.
* ``GET /api/v1/jobs/{id}`` — one job: status, per-job progress (step, total, s/it, ETA), queue position,
  outputs; jobs of earlier server runs come from the history database.
* ``GET /api/v1/jobs/{id}/preview`` — the job's latest predicted x0 (PNG, or JPEG with ``?format=jpeg``).
* ``POST /api/v1/jobs/{id}/interrupt`` — stop that job (a queued one leaves the queue).
* ``GET /api/v1/jobs/{id}/images/{k}`` — the job's k-th image file (PNG with its infotext).
* ``POST /api/v1/jobs/{id}/rating`` — ``{"rating": 1 | -1 | null, "note": "..."}``.
* ``GET /api/v1/history?q=&model=&sampler=&rating=&status=&kind=&limit=&offset=`` — search the history.
* ``GET /api/v1/info`` — models, samplers, schedules, defaults and limits (what the web UI's form offers).
* ``GET /api/v1/tokenize?prompt=&negative=false`` — A1111's token counter, per 75-token chunk.
* ``GET /metrics`` — Prometheus text format.

Explain jobs, trace files and live steps: :mod:`.own_explain`; the toy world and workflow pictures:
:mod:`.own_tools`; the web UI's files: :mod:`.own_web`.
"""

from __future__ import annotations

import asyncio
import functools
import io
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel

from .history import RATINGS
from .jobs import FINISHED
from .own_common import (
    API,
    JobRequest,
    default_size,
    find_job,
    form_params,
    get_state,
    job_or_row,
    job_view,
    prepare,
    row_view,
    submit,
)
from .state import ApiError

router = APIRouter(tags=["glassforge API"])


@router.post(f"{API}/jobs", status_code=202)
def submit_job(req: JobRequest, request: Request) -> dict[str, Any]:
    """Queue a txt2img job and answer at once with its id; follow it with ``GET /api/v1/jobs/{id}``."""
    from .generation import run_txt2img

    state = get_state(request)
    spec, params = prepare(state, req)
    job = submit(state, "txt2img", params, spec, lambda job: run_txt2img(state, spec, job))
    return job_view(state, job)


# ---------------------------------------------------------------- reading jobs


@router.get(f"{API}/jobs")
def list_jobs(request: Request, status: str | None = None) -> dict[str, Any]:
    state = get_state(request)
    jobs = [job_view(state, j) for j in state.queue.jobs() if status is None or j.status == status]
    return {"jobs": jobs, "queue_length": len(state.queue.pending())}


@router.get(f"{API}/jobs/{{job_id}}")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    state = get_state(request)
    job, row = job_or_row(state, job_id)
    from .own_explain_run import explained

    if job is None:
        out = {**row_view(row), "form": form_params(row["params"], row)}
    else:
        out = job_view(state, job)
        stored = state.history.get(job_id) or {}
        out["rating"], out["note"] = stored.get("rating"), stored.get("note")
        out["form"] = form_params(job.params, job.record)
    out["explained"] = explained(request, job_id, out["kind"], out["status"])  # GET …/steps has data
    return out


@router.get(
    f"{API}/jobs/{{job_id}}/preview", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}}
)
async def job_preview(
    job_id: str, request: Request, format: str = Query("png", pattern="^(png|jpeg)$")
) -> Response:
    """The latest predicted x0 of a job this server runs or ran (header ``X-Step``: batch/step)."""
    job = find_job(get_state(request), job_id)
    image = await asyncio.to_thread(job.preview_image)
    if image is None:
        raise ApiError(404, f"job {job_id} has no preview (it has not run a sampler step)")
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG" if format == "jpeg" else "PNG", quality=90)
    pr = job.progress
    return Response(
        buf.getvalue(),
        media_type=f"image/{format}",
        headers={"X-Step": f"{pr.batch}/{pr.step}", "Cache-Control": "no-store"},
    )


@router.post(f"{API}/jobs/{{job_id}}/interrupt")
def interrupt_job(job_id: str, request: Request) -> dict[str, Any]:
    state = get_state(request)
    job = find_job(state, job_id)
    if job.status not in FINISHED:
        state.queue.interrupt(job)
    return job_view(state, job)


@router.get(f"{API}/jobs/{{job_id}}/images/{{k}}", responses={200: {"content": {"image/png": {}}}})
def job_image(job_id: str, k: int, request: Request) -> FileResponse:
    """The k-th image (0-based) of a job: the PNG file with its infotext, as saved."""
    state = get_state(request)
    job, row = job_or_row(state, job_id)
    paths = [str(p) for p in (job.record.get("images", []) if job is not None else row["images"])]
    if not 0 <= k < len(paths):
        raise ApiError(404, f"job {job_id} has {len(paths)} image(s); k must be 0 … {len(paths) - 1}")
    path = Path(paths[k])
    if not path.is_file():
        raise ApiError(404, f"image {k} of job {job_id} is no longer on disk ({path.name})")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


class Rating(BaseModel):
    rating: int | None
    note: str | None = None


@router.post(f"{API}/jobs/{{job_id}}/rating")
def rate_job(job_id: str, body: Rating, request: Request) -> dict[str, Any]:
    state = get_state(request)
    if body.rating is not None and body.rating not in RATINGS:
        raise ApiError(422, f"rating: {body.rating} is not 1 (good), -1 (bad) or null (unrated)")
    if not state.history.set_rating(job_id, body.rating, body.note):
        raise ApiError(404, f"no job {job_id!r} in the history")
    return {"id": job_id, "rating": body.rating, "note": body.note}


@router.get(f"{API}/history")
def history(
    request: Request,
    q: str | None = None,
    model: str | None = None,
    sampler: str | None = None,
    rating: int | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """Search the history, newest first: every word of ``q`` in the prompt, negative or infotexts."""
    rows, total = get_state(request).history.search(
        q, model=model, sampler=sampler, rating=rating, status=status, kind=kind, limit=limit, offset=offset
    )
    return {"total": total, "rows": [row_view(r) for r in rows]}


# ---------------------------------------------------------------- what the form offers


@router.get(f"{API}/info")
def info(request: Request) -> dict[str, Any]:
    """Models (with their native size), samplers, schedules, the defaults and the request limits."""
    from .. import __version__
    from ..sampling import SAMPLERS, SCHEDULES

    state = get_state(request)
    models = []
    for name in state.model_names():
        try:
            size = default_size(state, name)
        except (ApiError, OSError):
            size = 512
        models.append({"name": name, "default_size": size})
    cfg = state.config
    comfy = any(getattr(r, "path", "") in ("/comfy", "/comfy/") for r in request.app.routes)
    return {
        "version": __version__,
        "models": models,
        "current_model": state.current_model,
        "samplers": list(SAMPLERS),
        "schedulers": list(SCHEDULES),
        "defaults": JobRequest().model_dump(),
        "limits": {"max_size": cfg.max_size, "max_steps": cfg.max_steps, "max_images": cfg.max_images},
        "comfy_editor": "/comfy/" if comfy else None,
    }


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from ..models.tokenizer import ClipTokenizer

    return ClipTokenizer("clip-l")


@router.get(f"{API}/tokenize")
def tokenize(
    request: Request, prompt: str = "", negative: bool = False, steps: int = Query(20, ge=1, le=10000)
) -> dict[str, Any]:
    """A1111's token counter for a prompt (``count``/``max``, e.g. 7/75) and its 75-token chunks.

    Extra networks and ``AND`` are handled as A1111's counter does; the scheduled text with the most
    tokens is the one reported. Every family's CLIP BPE gives the same counts (SDXL's two encoders
    split the same tokens)."""
    from ..prompts import parse_prompt

    tok = _tokenizer()
    try:
        texts = parse_prompt(prompt, steps, negative=negative).texts()
    except ValueError as e:
        raise ApiError(422, f"prompt: {e}") from None
    best = max((tok.tokenize_prompt(t) for t in texts), key=lambda tp: tp.token_count)
    chunks = []
    for c in best.chunks:
        words = [t for t, kind in zip(c.texts, _kinds(c.ids), strict=True) if kind == "token"]
        chunks.append({"tokens": len(words), "texts": [w.replace("</w>", "") for w in words]})
    return {"count": best.token_count, "max": best.max_length, "counter": best.counter, "chunks": chunks}


def _kinds(ids: tuple[int, ...]) -> list[str]:
    from ..explain.recorder import token_kinds

    return token_kinds(ids)


# ---------------------------------------------------------------- metrics


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    state = get_state(request)
    text = state.metrics.render(
        queue_length=len(state.queue.pending()),
        running=int(state.queue.current is not None),
        loaded_models=len(state.manager.loaded()),
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def _include_parts() -> None:
    from . import own_explain, own_tools

    router.include_router(own_explain.router)
    router.include_router(own_tools.router)


_include_parts()
