"""The toy world and the workflow picture for the web UI.

* ``GET /api/v1/toy?words=dog,cat&sampler=&scheduler=&steps=&cfg=&seed=&particles=&lang=`` — the real
  sampler run on the 2-D toy world's exact denoiser (:func:`~glassforge.explain.toy_trace.run_toy`):
  every particle's position after every step, the clusters, and per step the formula filled in with the
  numbers of one followed particle (the ``explain --toy`` report's step data).
* ``GET /api/v1/jobs/{id}/workflow`` — the job as the built-in text-to-image workflow (API format, the
  graph ``glassforge generate`` runs), with each node's status from the job's progress.
* ``POST /api/v1/workflow`` — the same for form parameters (no job: every node ``idle``).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Query, Request

from .jobs import DONE, ERROR, INTERRUPTED, PENDING, RUNNING, Job
from .own_common import API, JobRequest, form_params, get_state, job_or_row, prepare
from .state import ApiError, ServerState

router = APIRouter(tags=["glassforge API: tools"])


# ---------------------------------------------------------------- the toy world


def _rounded(points) -> list[list[float]]:
    return [[round(float(a), 4), round(float(b), 4)] for a, b in points.tolist()]


def _labels(world, colour) -> list[dict[str, Any]]:
    out = []
    for word in world.words:
        means = [c.mean for c in world.clusters if c.word == word]
        cx, cy = sum(m[0] for m in means) / len(means), sum(m[1] for m in means) / len(means)
        r = math.hypot(cx, cy) or 1.0
        f = (r + 0.85) / r
        out.append({"word": word, "at": [cx * f, cy * f], "c": colour(word)})
    return out


def toy_data(trace, lang: str) -> dict[str, Any]:
    from ..explain.toy_i18n import toy_strings
    from ..explain.toy_report import COMPRESS, NEAR, step_data
    from ..toy.plot import word_colour

    world = trace.world
    listed = trace.cond.words.weights

    def colour(word: str) -> str:
        return word_colour(world, word)

    xs = trace.xs
    ds = [(st.evaluations[0].guided if st.evaluations else st.denoised) for st in trace.steps]
    steps = step_data(trace, toy_strings(lang))
    return {
        "prompt": trace.prompt,
        "negative": trace.negative,
        "sampler": trace.sampler,
        "schedule": trace.schedule_used,
        "schedule_formula": trace.schedule_formula,
        "cfg": trace.cfg,
        "seed": trace.seed,
        "particles": trace.particles,
        "followed": trace.followed,
        "words": list(world.words),
        "prompt_words": dict(listed),
        "ignored": list(trace.cond.words.ignored),
        "compress": COMPRESS,
        "near": NEAR,
        "far": max(5.0, float(xs.norm(dim=-1).max())),
        "clusters": [
            {
                "word": c.word,
                "label": c.label,
                "m": list(c.mean),
                "s": c.std,
                "c": colour(c.word),
                "on": not listed or c.word in listed,
            }
            for c in world.clusters
        ],
        "labels": _labels(world, colour),
        "sigmas": [float(s) for s in trace.sigmas],
        "xs": [_rounded(x) for x in xs],
        "ds": [_rounded(d) for d in ds],
        "steps": [{k: v for k, v in st.items() if k != "numbers"} for st in steps],
        "end_fractions": trace.end_fractions(),
    }


@router.get(f"{API}/toy")
def toy(
    words: str = Query("dog, cat", description="the prompt: words of the toy world, e.g. 'dog, cat'"),
    negative: str = "",
    sampler: str = "DPM++ 2M",
    scheduler: str = "Automatic",
    steps: int = Query(20, ge=1, le=200),
    cfg: float = Query(7.0, ge=0.0, le=50.0),
    seed: int = -1,
    particles: int = Query(200, ge=1, le=2000),
    lang: str = Query("en", pattern="^(en|ja)$"),
) -> dict[str, Any]:
    """Particles flowing from noise to the prompt's clusters, with each step's formula and numbers."""
    from ..explain.toy_trace import run_toy
    from ..sampling.registry import UnknownNameError
    from ..toy.world import ToyWorld, UnknownWordError

    try:
        trace = run_toy(ToyWorld.default(), words.replace(",", ", "), negative=negative, sampler=sampler,
                        schedule=scheduler, steps=steps, cfg=cfg, seed=seed, particles=particles)  # fmt: skip
    except UnknownWordError as e:
        raise ApiError(422, f"words: {e}") from None
    except UnknownNameError as e:
        raise ApiError(422, f"{'sampler' if e.kind == 'sampler' else 'scheduler'}: {e}") from None
    except ValueError as e:
        raise ApiError(422, str(e)) from None
    return toy_data(trace, lang)


# ---------------------------------------------------------------- the workflow picture


def node_statuses(
    job: Job | None, row: dict[str, Any] | None, wf: dict[str, dict]
) -> dict[str, dict[str, Any]]:
    """Each node's status for a txt2img job: loader and prompts done once sampling started, the sampler
    running with the step, decode and save done when the images exist."""
    status = job.status if job is not None else (row["status"] if row else None)
    steps_done = (job.record if job is not None else {}).get("steps_done", 0)
    images = len((job.record if job is not None else row or {}).get("images", []) or [])
    pr = job.progress if job is not None else None
    sampler, after = "7", ("8", "9")
    out: dict[str, dict[str, Any]] = {}
    for node_id in wf:
        if status is None:
            state = "idle"
        elif status == PENDING:
            state = "pending"
        elif status == DONE:
            state = "done"
        elif status == RUNNING:
            started = steps_done > 0 or (pr is not None and pr.step > 0)
            if node_id == sampler:
                state = "running" if started else "pending"
            elif node_id in after:
                state = "done" if images else "pending"
            else:
                state = "done" if started else "running"
        elif status == INTERRUPTED:
            state = (
                "interrupted"
                if node_id == sampler
                else ("done" if images or node_id not in after else "skipped")
            )
        elif status == ERROR:
            state = (
                "error" if node_id == sampler else ("skipped" if node_id in after and not images else "done")
            )
        else:
            state = status
        out[node_id] = {"status": state}
    if pr is not None and status == RUNNING and pr.total:
        out[sampler]["progress"] = {
            "step": pr.step,
            "total": pr.total,
            "batch": pr.batch,
            "batches": pr.batches,
        }
    return out


def graph(
    state: ServerState, form: dict[str, Any], job: Job | None, row: dict[str, Any] | None
) -> dict[str, Any]:
    from ..graph.builtin import txt2img_workflow
    from ..graph.nodes import core_nodes

    spec, _ = prepare(state, JobRequest(**form))
    ckpt = state.model_path(spec.model).name
    wf = txt2img_workflow(spec.params, ckpt)
    statuses = node_statuses(job, row, wf)
    nodes, links = [], []
    registry = core_nodes()
    for node_id, node in wf.items():
        schema = registry[node["class_type"]].schema if node["class_type"] in registry else None
        widgets = {k: v for k, v in node["inputs"].items() if not _is_link(v)}
        nodes.append({"id": node_id, "class_type": node["class_type"],
                      "title": schema.display_name if schema else node["class_type"],
                      "role": schema.role if schema else "",
                      "outputs": [o.label for o in schema.outputs] if schema else [],
                      "widgets": widgets, **statuses[node_id]})  # fmt: skip
        for name, value in node["inputs"].items():
            if _is_link(value):
                src = wf[value[0]]["class_type"]
                outs = registry[src].schema.outputs if src in registry else ()
                kind = outs[value[1]].type if value[1] < len(outs) else ""
                links.append({"from": value[0], "slot": value[1], "to": node_id, "input": name, "type": kind})
    return {
        "workflow": wf,
        "nodes": nodes,
        "links": links,
        "job_status": job.status if job else (row or {}).get("status"),
    }


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


@router.get(f"{API}/jobs/{{job_id}}/workflow")
def job_workflow(job_id: str, request: Request) -> dict[str, Any]:
    """The job's parameters as the built-in txt2img workflow, nodes with their status, and the links."""
    state = get_state(request)
    job, row = job_or_row(state, job_id)
    kind = job.kind if job is not None else row["kind"]
    if kind not in ("txt2img", "explain"):
        raise ApiError(422, f"job {job_id} is a {kind} job; only txt2img and explain jobs have this workflow")
    form = form_params(job.params if job else row["params"], job.record if job else row)
    return {"id": job_id, **graph(state, form, job, row)}


@router.post(f"{API}/workflow")
def form_workflow(req: JobRequest, request: Request) -> dict[str, Any]:
    """The built-in txt2img workflow for these parameters (every node ``idle``)."""
    return graph(get_state(request), req.model_dump(exclude_none=True), None, None)
