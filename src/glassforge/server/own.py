"""glassforge's own routes: jobs with ids (what A1111's API lacks), the history with ratings, metrics.

* ``GET /api/jobs`` — jobs this server process knows (queued, running, recent), oldest first.
* ``GET /api/jobs/{id}`` — one job: status, per-job progress, queue position, outputs; jobs of earlier
  server runs come from the history database.
* ``GET /api/jobs/{id}/preview`` — the running job's latest predicted x0 as a PNG.
* ``POST /api/jobs/{id}/interrupt`` — stop that job (a queued one leaves the queue).
* ``POST /api/jobs/{id}/rating`` — ``{"rating": 1 | -1 | null, "note": "..."}``.
* ``GET /api/history?q=&model=&sampler=&rating=&status=&kind=&limit=&offset=`` — search the history.
* ``GET /metrics`` — Prometheus text format.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from .history import RATINGS
from .jobs import FINISHED, Job
from .state import ApiError, ServerState

router = APIRouter(tags=["glassforge API"])


def get_state(request: Request) -> ServerState:
    return request.app.state.glassforge


def job_view(state: ServerState, job: Job) -> dict[str, Any]:
    out = job.summary()
    out["params"] = job.params
    out["queue_position"] = state.queue.position(job)
    out["model"] = job.record.get("model")
    out["sampler"] = job.record.get("sampler")
    out["prompt"] = job.record.get("prompt")
    out["images"] = [str(p) for p in job.record.get("images", [])]
    out["infotexts"] = list(job.record.get("infotexts", []))
    out["steps_done"] = job.record.get("steps_done", 0)  # sampler steps run, all batches together
    return out


def _find(state: ServerState, job_id: str) -> Job:
    job = state.queue.get(job_id)
    if job is None:
        raise ApiError(
            404, f"no job {job_id!r} is queued or running in this server (GET /api/jobs lists them)"
        )
    return job


@router.get("/api/jobs")
def list_jobs(request: Request, status: str | None = None) -> dict[str, Any]:
    state = get_state(request)
    jobs = [job_view(state, j) for j in state.queue.jobs() if status is None or j.status == status]
    return {"jobs": jobs, "queue_length": len(state.queue.pending())}


@router.get("/api/jobs/{job_id}")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    state = get_state(request)
    job = state.queue.get(job_id)
    if job is not None:
        return job_view(state, job)
    row = state.history.get(job_id)
    if row is None:
        raise ApiError(404, f"no job {job_id!r} (neither in this server's queue nor in the history)")
    return row


@router.get("/api/jobs/{job_id}/preview", responses={200: {"content": {"image/png": {}}}})
async def job_preview(job_id: str, request: Request) -> Response:
    job = _find(get_state(request), job_id)
    image = await asyncio.to_thread(job.preview_image)
    if image is None:
        raise ApiError(404, f"job {job_id} has no preview (it has not run a sampler step)")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png")


@router.post("/api/jobs/{job_id}/interrupt")
def interrupt_job(job_id: str, request: Request) -> dict[str, Any]:
    state = get_state(request)
    job = _find(state, job_id)
    if job.status not in FINISHED:
        state.queue.interrupt(job)
    return job_view(state, job)


class Rating(BaseModel):
    rating: int | None
    note: str | None = None


@router.post("/api/jobs/{job_id}/rating")
def rate_job(job_id: str, body: Rating, request: Request) -> dict[str, Any]:
    state = get_state(request)
    if body.rating is not None and body.rating not in RATINGS:
        raise ApiError(422, f"rating: {body.rating} is not 1 (good), -1 (bad) or null (unrated)")
    if not state.history.set_rating(job_id, body.rating, body.note):
        raise ApiError(404, f"no job {job_id!r} in the history")
    return {"id": job_id, "rating": body.rating, "note": body.note}


@router.get("/api/history")
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
    rows, total = get_state(request).history.search(
        q, model=model, sampler=sampler, rating=rating, status=status, kind=kind, limit=limit, offset=offset
    )
    return {"total": total, "rows": rows}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    state = get_state(request)
    text = state.metrics.render(
        queue_length=len(state.queue.pending()),
        running=int(state.queue.current is not None),
        loaded_models=len(state.manager.loaded()),
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
