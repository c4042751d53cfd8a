"""The A1111/Forge-compatible API under ``/sdapi/v1`` (shapes: A1111 1.10 ``modules/api``).

Beyond A1111: requests queue instead of blocking each other; ``info`` carries the ``job_id`` (see
``/api/v1/jobs/{id}``); ``/progress`` reports the running job and adds ``job_id`` and ``queue_size`` to its
``state``. Errors are ``{"error": kind, "detail": one message}`` with 422 for bad input and 404 for an
unknown model.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from .. import __version__
from ..sampling.names import resolve_sampler
from .a1111_request import TIMESTEP_SAMPLERS, Txt2ImgRequest, check_options, to_spec
from .generation import Txt2ImgOutcome, load_model_job, run_txt2img
from .jobs import ERROR, Job
from .state import ApiError, ServerState

router = APIRouter(prefix="/sdapi/v1", tags=["A1111 API"])
_JOB_NAMES = {"txt2img": "scripts_txt2img"}  # what A1111's state.job says for an API txt2img


def get_state(request: Request) -> ServerState:
    return request.app.state.glassforge


def b64_png(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def job_error(job: Job) -> ApiError:
    """The HTTP error for a job that failed: bad input found late → 422, a missing file → 404."""
    from ..sampling.registry import UnknownNameError
    from ..txt2img import GenerationError

    exc = job.exception
    if isinstance(exc, GenerationError | UnknownNameError):
        return ApiError(422, job.error or "invalid request")
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ApiError(404, job.error or "not found")
    return ApiError(500, f"{job.kind} job {job.id} failed: {job.error}", kind="GenerationFailed")


# ---------------------------------------------------------------- txt2img


@router.post("/txt2img")
async def txt2img(req: Txt2ImgRequest, request: Request) -> dict[str, Any]:
    state = get_state(request)
    spec = to_spec(state, req)
    params = req.model_dump()
    job = Job(kind="txt2img", params=params, run=lambda job: run_txt2img(state, spec, job))
    if req.force_task_id:
        job.id = req.force_task_id
    p = spec.params
    sampler = resolve_sampler(p.sampler)[0].name
    job.record.update(prompt=p.prompt, negative_prompt=p.negative_prompt, seed=p.seed, sampler=sampler)
    try:
        state.queue.submit(job)
    except ValueError as e:
        raise ApiError(409, f"force_task_id: {e}") from None
    except RuntimeError as e:
        raise ApiError(503, str(e), kind="Unavailable") from None
    await job.wait()
    if job.status == ERROR:
        raise job_error(job)
    out: Txt2ImgOutcome = job.result or Txt2ImgOutcome(params=p, sampler=p.sampler)
    pngs, infotexts, first = list(out.pngs), list(out.infotexts), 0
    if len(out.images) > 1 and state.options.get("return_grid", True):
        from ..pngfile import encode_image

        grid = await asyncio.to_thread(lambda: encode_image(image_grid(out.images), infotexts[0]))
        pngs.insert(0, grid)
        infotexts.insert(0, infotexts[0])
        first = 1
    n = len(out.images)
    rp = out.params or p
    info = {
        "prompt": rp.prompt,
        "all_prompts": [rp.prompt] * n,
        "negative_prompt": rp.negative_prompt,
        "all_negative_prompts": [rp.negative_prompt] * n,
        "seed": out.seeds[0] if out.seeds else rp.seed,
        "all_seeds": out.seeds,
        "subseed": rp.subseed,
        "all_subseeds": out.subseeds,
        "subseed_strength": rp.subseed_strength,
        "width": rp.width,
        "height": rp.height,
        "sampler_name": out.sampler,
        "cfg_scale": rp.cfg_scale,
        "steps": rp.steps,
        "batch_size": rp.batch_size,
        "restore_faces": req.restore_faces,
        "face_restoration_model": None,
        "sd_model_name": out.model_name or None,
        "sd_model_hash": out.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w,
        "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": req.denoising_strength,
        "extra_generation_params": {"Schedule type": out.schedule, **dict(spec.infotext_extra)},
        "index_of_first_image": first,
        "infotexts": infotexts,
        "styles": req.styles or [],
        "job_timestamp": out.started.strftime("%Y%m%d%H%M%S"),
        "clip_skip": rp.clip_skip,
        "is_using_inpainting_conditioning": out.is_inpainting,
        "version": f"glassforge {__version__}",
        "job_id": job.id,
        "status": job.status,
    }
    images = [base64.b64encode(b).decode("ascii") for b in pngs] if req.send_images else []
    return {"images": images, "parameters": params, "info": json.dumps(info, ensure_ascii=False)}


def image_grid(images: list) -> Any:
    """A1111's default grid (``n_rows`` −1): round(√n) rows, images left to right on black."""
    from PIL import Image

    rows = max(1, round(math.sqrt(len(images))))
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), color="black")
    for i, image in enumerate(images):
        grid.paste(image, box=(i % cols * w, i // cols * h))
    return grid


@router.post("/img2img")
@router.post("/extra-single-image")
@router.post("/extra-batch-images")
@router.post("/interrogate")
async def not_implemented(request: Request) -> None:
    route = request.url.path.rsplit("/", 1)[-1]
    raise ApiError(
        501, f"/sdapi/v1/{route} is not implemented in glassforge yet; txt2img is", kind="NotImplemented"
    )


# ---------------------------------------------------------------- progress and control


@router.get("/progress")
async def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
    state = get_state(request)
    job = state.queue.current
    queue_size = len(state.queue.pending())
    if job is None:
        idle = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
                "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
                "job_id": None, "queue_size": queue_size}  # fmt: skip
        return {"progress": 0, "eta_relative": 0, "state": idle, "current_image": None, "textinfo": None}
    pr = job.progress
    count = max(1, pr.batches)
    value = 0.01 + pr.batch / count + (pr.step / pr.total / count if pr.total else 0.0)  # A1111's formula
    elapsed = time.time() - (pr.started or time.time())
    eta_relative = elapsed / value - elapsed
    image = None
    if not skip_current_image:
        preview = await asyncio.to_thread(job.preview_image)
        image = b64_png(preview) if preview is not None else None
    started = time.strftime("%Y%m%d%H%M%S", time.localtime(job.started or job.created))
    return {
        "progress": min(value, 1.0),
        "eta_relative": eta_relative,
        "state": {
            "skipped": job.skip_event.is_set(),
            "interrupted": job.interrupted,
            "stopping_generation": False,
            "job": _JOB_NAMES.get(job.kind, job.kind),
            "job_count": pr.batches,
            "job_timestamp": started,
            "job_no": pr.batch,
            "sampling_step": pr.step,
            "sampling_steps": pr.total,
            "job_id": job.id,
            "queue_size": queue_size,
        },
        "current_image": image,
        "textinfo": f"{job.kind} {job.id}: batch {pr.batch + 1}/{pr.batches}, step {pr.step}/{pr.total}",
    }


@router.post("/interrupt")
async def interrupt(request: Request) -> dict:
    job = get_state(request).queue.current
    if job is not None:
        job.interrupt()
    return {}


@router.post("/skip")
async def skip(request: Request) -> dict:
    job = get_state(request).queue.current
    if job is not None:
        job.skip()
    return {}


# ---------------------------------------------------------------- settings and models


@router.get("/options")
def get_options(request: Request) -> dict[str, Any]:
    state = get_state(request)
    out = dict(state.options)
    if state.current_model is not None:
        path = state.model_path(state.current_model)
        out["sd_model_checkpoint"] = state.model_title(state.current_model)
        out["sd_checkpoint_hash"] = state.sha256(path)
    return out


@router.post("/options")
async def set_options(values: dict[str, Any], request: Request) -> None:
    """Set A1111 settings; ``sd_model_checkpoint`` loads that model (on the worker, in queue order)
    and answers when it is loaded."""
    state = get_state(request)
    values = check_options(values)
    name = values.pop("sd_model_checkpoint", None)
    if name is not None:
        path = state.model_path(name)
        job = Job(
            kind="load_model",
            params={"sd_model_checkpoint": name},
            run=lambda job: load_model_job(state, name, job),
        )
        job.record.update(model=path.stem)
        state.queue.submit(job)
        await job.wait()
        if job.status == ERROR:
            raise job_error(job)
        state.current_model = path.name if path.name in state.model_names() else str(path)
    state.options.update(values)


@router.get("/cmd-flags")
def cmd_flags(request: Request) -> dict[str, Any]:
    cfg = get_state(request).config
    return {"host": cfg.host, "port": cfg.port, "models": [str(p) for p in cfg.models_dirs],
            "data": str(cfg.data_dir), "device": cfg.device, "precision": cfg.precision, "preview": cfg.preview,
            "api": True, "nowebui": True}  # fmt: skip


@router.get("/sd-models")
def sd_models(request: Request) -> list[dict[str, Any]]:
    state = get_state(request)
    out = []
    for name in state.model_names():
        path = state.model_path(name)
        digest = state.sha256(path)
        out.append({"title": f"{name} [{digest[:10]}]" if digest else name, "model_name": path.stem,
                    "hash": digest[:10] if digest else None, "sha256": digest, "filename": str(path),
                    "config": None})  # fmt: skip
    return out


@router.post("/refresh-checkpoints")
def refresh_checkpoints() -> None:
    """Checkpoints are listed from the folders on every request; nothing to refresh."""


@router.get("/samplers")
def samplers() -> list[dict[str, Any]]:
    from ..infotext import sampler_uses_ensd
    from ..sampling import SAMPLERS, SCHEDULES

    out = []
    for name in SAMPLERS:
        info = SAMPLERS[name]
        options: dict[str, str] = {}
        if info.default_schedule and name not in TIMESTEP_SAMPLERS:
            options["scheduler"] = _schedule_name(SCHEDULES[info.default_schedule])
        for key, flag in (("second_order", info.second_order), ("brownian_noise", info.brownian),
                          ("uses_ensd", sampler_uses_ensd(name)),
                          ("discard_next_to_last_sigma", info.discard_penultimate_sigma)):  # fmt: skip
            if flag:
                options[key] = "True"
        out.append({"name": name, "aliases": list(info.aliases), "options": options})
    return out


def _schedule_name(info) -> str:
    return info.aliases[0] if info.aliases else info.name.lower().replace(" ", "_")


@router.get("/schedulers")
def schedulers() -> list[dict[str, Any]]:
    from ..sampling import SCHEDULES

    out = []
    for label in SCHEDULES:
        info = SCHEDULES[label]
        name = _schedule_name(info)
        aliases = [a for a in info.aliases if a != name] or None
        rho = info.default_rho if info.default_rho is not None else -1
        out.append({"name": name, "label": label, "aliases": aliases, "default_rho": rho,
                    "need_inner_model": info.needs_model_sigmas})  # fmt: skip
    return out


# ---------------------------------------------------------------- images and the rest


class PngInfoRequest(BaseModel):
    image: str = ""


@router.post("/png-info")
def png_info(req: PngInfoRequest) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    from ..infotext import parse_generation_parameters
    from ..pngfile import infotext_from_image

    data = req.image.strip()
    if not data:
        return {"info": "", "items": {}, "parameters": {}}
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode(data, validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, ValueError):
        raise ApiError(
            422, "image: not valid base64; send a base64 PNG, JPEG or WebP (a data: URL is fine)"
        ) from None
    except (UnidentifiedImageError, OSError):
        raise ApiError(422, "image: the base64 data is not a PNG, JPEG or WebP image") from None
    info = infotext_from_image(image) or ""
    items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
    return {"info": info, "items": items, "parameters": parse_generation_parameters(info) if info else {}}


@router.get("/scripts")
def scripts() -> dict[str, list]:
    return {"txt2img": [], "img2img": []}


@router.get("/script-info")
@router.get("/upscalers")
@router.get("/latent-upscale-modes")
@router.get("/sd-vae")
@router.get("/sd-modules")
@router.get("/loras")
@router.get("/hypernetworks")
@router.get("/face-restorers")
@router.get("/realesrgan-models")
@router.get("/prompt-styles")
@router.get("/extensions")
def empty_list() -> list:
    """Lists of things glassforge does not have (yet): always empty."""
    return []


@router.get("/embeddings")
def embeddings() -> dict[str, dict]:
    return {"loaded": {}, "skipped": {}}


@router.get("/memory")
def memory() -> dict[str, Any]:
    import os

    import torch

    from .metrics import _rss_bytes

    rss = _rss_bytes() or 0
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ram = {"free": total - rss, "used": rss, "total": total}  # A1111: this process's share of the RAM
    if not torch.cuda.is_available():
        return {"ram": ram, "cuda": {"error": "unavailable (no CUDA device)"}}
    free, total_gpu = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def pair(key: str) -> dict[str, int]:
        return {"current": stats.get(f"{key}.all.current", 0), "peak": stats.get(f"{key}.all.peak", 0)}

    return {
        "ram": ram,
        "cuda": {
            "system": {"free": free, "used": total_gpu - free, "total": total_gpu},
            "active": pair("active_bytes"),
            "reserved": pair("reserved_bytes"),
            "inactive": pair("inactive_split_bytes"),
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
        },
    }
