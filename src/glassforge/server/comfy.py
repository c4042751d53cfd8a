"""The ComfyUI-compatible API (shapes: ComfyUI 0.3.64, ``shared/reference/comfyui.md`` §3–4).

Every route is registered bare, under ``/api`` (as ComfyUI does) and under ``/comfy/api`` (where the
official frontend served at ``/comfy/`` looks for it). ``POST /prompt`` validates at once (400 with
ComfyUI's ``{"error", "node_errors"}``) and queues a ``"workflow"`` job on the server's one queue;
``/ws`` streams its events (:mod:`.comfy_ws`). Beyond ComfyUI: ``/view`` and ``/upload/image`` answer
what was wrong instead of an empty 400, an upload must be an image, and ``/history/{id}`` of a prompt
from an earlier server run is in the history database (``/api/v1/jobs/{id}``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import mimetypes
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response

from .. import __version__
from .comfy_jobs import PREVIEW_METHODS, WORKFLOW, Comfy
from .comfy_ws import MAX_UPLOAD_SIZE, SERVER_FEATURES
from .state import ApiError

router = APIRouter(tags=["ComfyUI API"])
COMFYUI_VERSION = "0.3.64"  # the ComfyUI whose API this follows
FRONTEND_VERSION = "1.27.10"  # the comfyui-frontend-package it was tested with
_PROMPT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
                 "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
                 "hypernetworks", "photomaker", "classifiers")  # fmt: skip


def get_comfy(request: Request) -> Comfy:
    return request.app.state.comfy


def install(app: FastAPI, state) -> Comfy:
    """Add the ComfyUI API, its websocket and the frontend to ``app`` (before other /api routers, so
    ComfyUI's ``/api/history`` is the one that answers)."""
    from . import comfy_frontend

    comfy = Comfy(state)
    app.state.comfy = comfy
    for prefix in ("", "/api", "/comfy/api"):
        app.include_router(router, prefix=prefix, include_in_schema=prefix == "")
        app.include_router(comfy_frontend.router, prefix=prefix, include_in_schema=prefix == "")
    app.add_api_websocket_route("/comfy/ws", websocket)
    comfy_frontend.mount(app)
    return comfy


def _error(kind: str, message: str, details: str = "", extra: dict | None = None) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def _bad(error: dict, node_errors: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=400, content={"error": error, "node_errors": node_errors or {}})


async def _json_body(request: Request, default: Any = None) -> Any:
    raw = await request.body()
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except ValueError as err:
        raise ApiError(400, f"body: not valid JSON ({err})", kind="InvalidRequest") from None


# ---------------------------------------------------------------- prompt and queue


class BadPrompt(Exception):
    """A ``POST /prompt`` body that cannot be queued; ``error`` is ComfyUI's error object."""

    def __init__(self, kind: str, message: str, details: str = ""):
        super().__init__(message)
        self.error = _error(kind, message, details)


@dataclass(frozen=True)
class PromptRequest:
    prompt: Any
    extra_data: dict[str, Any]  # with client_id copied in, as ComfyUI does
    prompt_id: str | None
    front: bool
    number: float | None  # None: the server's counter
    targets: list[str] | None  # partial_execution_targets


def read_prompt_request(raw: bytes, in_use: Callable[[str], bool]) -> PromptRequest:
    """Check a ``POST /prompt`` body (everything but the workflow itself); raises :class:`BadPrompt`."""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as err:
        raise BadPrompt("invalid_prompt", "Request body is not valid JSON", str(err)) from None
    if not isinstance(body, dict) or "prompt" not in body:
        raise BadPrompt("no_prompt", "No prompt provided", 'expected a JSON object {"prompt": {...}}')
    extra = body.get("extra_data", {})
    if not isinstance(extra, dict):
        raise BadPrompt("invalid_prompt", "extra_data must be an object", f"got {type(extra).__name__}")
    extra = dict(extra)
    client_id = body.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str):
            raise BadPrompt("invalid_prompt", "client_id must be a string", repr(client_id))
        extra["client_id"] = client_id
    prompt_id = body.get("prompt_id")
    if prompt_id is not None and (not isinstance(prompt_id, str) or not _PROMPT_ID.match(prompt_id)):
        raise BadPrompt("invalid_prompt", "prompt_id must be a UUID (letters, digits, - _ . : up to 128)",
                        f"got {prompt_id!r}")  # fmt: skip
    if prompt_id is not None and in_use(prompt_id):
        raise BadPrompt("invalid_prompt", "prompt_id is already in use", prompt_id)
    targets = body.get("partial_execution_targets")
    if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise BadPrompt(
            "invalid_prompt", "partial_execution_targets must be a list of node ids", repr(targets)
        )
    method = extra.get("preview_method")
    if method is not None and method not in PREVIEW_METHODS:
        raise BadPrompt("invalid_prompt", "extra_data.preview_method is unknown",
                        f"{method!r}; expected one of {', '.join(PREVIEW_METHODS)}")  # fmt: skip
    number = None
    if "number" in body:
        try:
            number = float(body["number"])
        except (TypeError, ValueError):
            raise BadPrompt("invalid_prompt", "number must be a number", repr(body["number"])) from None
    return PromptRequest(body["prompt"], extra, prompt_id, bool(body.get("front")), number, targets)


@router.post("/prompt")
async def post_prompt(request: Request) -> Response:
    """Queue an API-format workflow: ``{"prompt", "client_id"?, "prompt_id"?, "number"?, "front"?,
    "extra_data"?, "partial_execution_targets"?}`` → ``{"prompt_id", "number", "node_errors"}``."""
    from ..graph.validate import WorkflowError

    comfy = get_comfy(request)
    comfy.hub.bind(asyncio.get_running_loop())
    try:
        req = read_prompt_request(await request.body(), comfy.known)
        valid = await asyncio.to_thread(comfy.executor.validate, comfy.only_targets(req.prompt, req.targets))
    except BadPrompt as err:
        return _bad(err.error)
    except WorkflowError as err:
        return JSONResponse(status_code=400, content=err.response())
    except RecursionError as err:
        return _bad(_error("exception_during_validation", "Exception when validating node", str(err)))
    number = req.number
    if number is None:
        number = comfy.next_number() * (-1 if req.front else 1)
    try:
        job = comfy.submit(req.prompt, number=number, extra_data=req.extra_data, outputs=list(valid.outputs),
                           prompt_id=req.prompt_id, front=req.front, targets=req.targets)  # fmt: skip
    except RuntimeError as err:
        raise ApiError(503, str(err), kind="Unavailable") from None
    return JSONResponse({"prompt_id": job.id, "number": number, "node_errors": valid.node_errors})


@router.get("/prompt")
def get_prompt(request: Request) -> dict[str, Any]:
    return {"exec_info": {"queue_remaining": get_comfy(request).queue_remaining()}}


@router.get("/queue")
def get_queue(request: Request) -> dict[str, list]:
    comfy = get_comfy(request)
    running, pending = comfy.workflow_jobs()
    return {
        "queue_running": [comfy.queue_item(running)] if running is not None else [],
        "queue_pending": [comfy.queue_item(j) for j in pending],
    }


@router.post("/queue")
async def post_queue(request: Request) -> Response:
    """``{"clear": true}`` drops every waiting workflow, ``{"delete": [prompt_id, ...]}`` those."""
    comfy = get_comfy(request)
    body = await _json_body(request, {})
    delete = body.get("delete", []) if isinstance(body, dict) else None
    if not isinstance(delete, list):
        raise ApiError(
            400, 'body: expected {"clear": true} or {"delete": [prompt ids]}', kind="InvalidRequest"
        )
    _, pending = comfy.workflow_jobs()
    drop = pending if body.get("clear") else [j for j in pending if j.id in set(map(str, delete))]
    for job in drop:
        comfy.state.queue.interrupt(job)
    return Response(status_code=200)


@router.post("/interrupt")
async def interrupt(request: Request) -> Response:
    """Stop the running workflow (only if it is ``{"prompt_id"}`` when one is given)."""
    comfy = get_comfy(request)
    body = await _json_body(request, {})
    wanted = body.get("prompt_id") if isinstance(body, dict) else None
    running, _ = comfy.workflow_jobs()
    if running is not None and (wanted is None or wanted == running.id):
        comfy.state.queue.interrupt(running)
    return Response(status_code=200)


@router.post("/free")
async def free(request: Request) -> Response:
    """``{"unload_models": bool, "free_memory": bool}``: either drops the loaded checkpoints and the
    workflow cache (which holds them), after the workflow that is running."""
    comfy = get_comfy(request)
    body = await _json_body(request, {})
    if isinstance(body, dict) and (body.get("unload_models") or body.get("free_memory")):
        await asyncio.to_thread(comfy.free)
    return Response(status_code=200)


# ---------------------------------------------------------------- history


@router.get("/history")
def get_history(
    request: Request, max_items: int | None = Query(None, ge=0), offset: int = -1
) -> dict[str, Any]:
    return get_comfy(request).history_page(max_items, offset)


@router.get("/history/{prompt_id}")
def get_history_entry(prompt_id: str, request: Request) -> dict[str, Any]:
    entry = get_comfy(request).history.get(prompt_id)
    return {prompt_id: entry} if entry is not None else {}


@router.post("/history")
async def post_history(request: Request) -> Response:
    """``{"clear": true}`` or ``{"delete": [prompt ids]}`` (the history database keeps its rows)."""
    comfy = get_comfy(request)
    body = await _json_body(request, {})
    if isinstance(body, dict) and body.get("clear"):
        comfy.delete_history()
    elif isinstance(body, dict) and isinstance(body.get("delete"), list):
        comfy.delete_history(body["delete"])
    return Response(status_code=200)


# ---------------------------------------------------------------- node definitions and the system


def _stub(name: str, display: str, category: str, inputs: dict[str, list], outputs: list[str]) -> dict:
    return {
        "input": {"required": inputs}, "input_order": {"required": list(inputs)},
        "output": outputs, "output_is_list": [False] * len(outputs), "output_name": list(outputs),
        "name": name, "display_name": display, "category": category, "output_node": False,
        "description": "Not available in glassforge: listed so the ComfyUI frontend's model widgets work; "
        "a workflow using it is refused.", "python_module": "glassforge.stub",
    }  # fmt: skip


_STRENGTH = ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}]
# The loader classes frontend 1.27.10 dereferences at startup (reference §5.3.1), for those we lack.
STUB_LOADERS = {
    "ImageOnlyCheckpointLoader": ("Image Only Checkpoint Loader (img2vid model)", "loaders/video_models",
                                  {"ckpt_name": [[], {}]}, ["MODEL", "CLIP_VISION", "VAE"]),
    "LoraLoader": ("Load LoRA", "loaders", {"model": ["MODEL", {}], "clip": ["CLIP", {}], "lora_name": [[], {}],
                   "strength_model": _STRENGTH, "strength_clip": _STRENGTH}, ["MODEL", "CLIP"]),
    "LoraLoaderModelOnly": ("LoraLoaderModelOnly", "loaders",
                            {"model": ["MODEL", {}], "lora_name": [[], {}], "strength_model": _STRENGTH}, ["MODEL"]),
    "VAELoader": ("Load VAE", "loaders", {"vae_name": [[], {}]}, ["VAE"]),
    "ControlNetLoader": ("Load ControlNet Model", "loaders", {"control_net_name": [[], {}]}, ["CONTROL_NET"]),
    "UNETLoader": ("Load Diffusion Model", "advanced/loaders", {"unet_name": [[], {}], "weight_dtype": [
        ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"], {}]}, ["MODEL"]),
    "UpscaleModelLoader": ("Load Upscale Model", "loaders", {"model_name": [[], {}]}, ["UPSCALE_MODEL"]),
    "StyleModelLoader": ("Load Style Model", "loaders", {"style_model_name": [[], {}]}, ["STYLE_MODEL"]),
    "GLIGENLoader": ("GLIGENLoader", "loaders", {"gligen_name": [[], {}]}, ["GLIGEN"]),
}  # fmt: skip


def object_info(comfy: Comfy) -> dict[str, dict]:
    info = comfy.registry.object_info(comfy.env)
    for name, (display, category, inputs, outputs) in STUB_LOADERS.items():
        if name not in info:
            info[name] = _stub(name, display, category, inputs, outputs)
    return info


@router.get("/object_info")
async def get_object_info(request: Request) -> dict[str, dict]:
    return await asyncio.to_thread(object_info, get_comfy(request))


@router.get("/object_info/{node_class}")
async def get_object_info_of(node_class: str, request: Request) -> dict[str, dict]:
    info = await asyncio.to_thread(object_info, get_comfy(request))
    return {node_class: info[node_class]} if node_class in info else {}


def _ram() -> tuple[int, int]:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    free = total
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return total, free


@router.get("/system_stats")
def system_stats(request: Request) -> dict[str, Any]:
    import torch

    total, free = _ram()
    device = get_comfy(request).state.manager.runtime.device
    name, vram_total, vram_free = str(device), total, free
    if device.type == "cuda":
        vram_free, vram_total = torch.cuda.mem_get_info(device)
        name = f"{device} {torch.cuda.get_device_name(device)}"
    return {
        "system": {
            "os": os.name, "ram_total": total, "ram_free": free, "comfyui_version": COMFYUI_VERSION,
            "required_frontend_version": FRONTEND_VERSION, "python_version": sys.version,
            "pytorch_version": torch.__version__, "embedded_python": False, "argv": list(sys.argv),
            "glassforge_version": __version__,
        },
        "devices": [{"name": name, "type": device.type, "index": device.index or 0, "vram_total": vram_total,
                     "vram_free": vram_free, "torch_vram_total": vram_total, "torch_vram_free": vram_free}],
    }  # fmt: skip


@router.get("/features")
def features() -> dict[str, Any]:
    return dict(SERVER_FEATURES)


@router.get("/embeddings")
def embeddings() -> list:
    return []


@router.get("/models")
def models() -> list[str]:
    return list(MODEL_FOLDERS)


@router.get("/models/{folder}")
def models_in(folder: str, request: Request) -> list[str]:
    if folder not in MODEL_FOLDERS:
        raise ApiError(404, f"no model folder {folder!r}; folders: {', '.join(MODEL_FOLDERS)}")
    return get_comfy(request).env.checkpoint_names() if folder == "checkpoints" else []


# ---------------------------------------------------------------- files


def resolve_file(comfy: Comfy, kind: str, filename: str, subfolder: str = "") -> Path:
    """``filename`` in ``subfolder`` of the ``kind`` folder; ApiError 400/403 for anything outside it."""
    base = comfy.folder(kind)
    if base is None:
        raise ApiError(400, f"type {kind!r} is not output, input or temp", kind="InvalidRequest")
    if not filename or filename.startswith(("/", "\\")) or ".." in filename or "\0" in filename + subfolder:
        raise ApiError(400, f"filename {filename!r} must be a plain file name", kind="InvalidRequest")
    root = base.resolve()
    path = (root / subfolder / filename).resolve()
    if root not in path.parents:
        raise ApiError(403, f"{subfolder}/{filename} is outside the {kind} folder", kind="Forbidden")
    return path


@router.get("/view", response_model=None)
async def view(request: Request, filename: str = "", subfolder: str = "", type: str = "output",
               preview: str | None = None, channel: str | None = None) -> Response:  # fmt: skip
    """An output, input or temp image. ``preview=webp;90`` re-encodes; ``channel`` rgb | a | rgba."""
    path = resolve_file(get_comfy(request), type, filename, subfolder)
    if not path.is_file():
        raise ApiError(404, f"no {type} file {filename!r} in subfolder {subfolder!r}")
    if not preview and channel in (None, "rgba"):
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(
            path, media_type=media, headers={"Content-Disposition": f'filename="{path.name}"'}
        )
    data, media = await asyncio.to_thread(_reencode, path, preview, channel or "rgba")
    return Response(data, media_type=media)


def _reencode(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGBA")
        if channel == "rgb":
            img = img.convert("RGB")
        elif channel == "a":
            img = Image.merge("RGBA", [Image.new("L", img.size, 0)] * 3 + [img.getchannel("A")])
        fmt, quality = "png", 90
        if preview:
            fmt, _, q = preview.partition(";")
            fmt = fmt.lower() if fmt.lower() in ("webp", "jpeg", "png") else "webp"
            quality = int(q) if q.isdigit() else 90
        if fmt == "jpeg":
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format=fmt.upper(), quality=quality)
    return buf.getvalue(), f"image/{fmt}"


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body → (text fields, files as (file name, bytes)) — stdlib only."""
    from email.parser import BytesParser
    from email.policy import HTTP

    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            400, f"expected a multipart/form-data body, got {content_type or 'none'}", kind="InvalidRequest"
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(400, "the multipart body has no parts", kind="InvalidRequest")
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = (part.get_filename(), payload)
        elif name:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, files


@router.post("/upload/image")
async def upload_image(request: Request) -> dict[str, str]:
    """Multipart ``image`` (+ ``type`` input|temp|output, ``subfolder``, ``overwrite``) → ``{"name",
    "subfolder", "type"}``. Same name, same bytes: the existing file is reused; same name, other bytes:
    ``name (1).png``."""
    comfy = get_comfy(request)
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_SIZE:
        raise ApiError(413, f"the upload is larger than {MAX_UPLOAD_SIZE} bytes", kind="TooLarge")
    fields, files = parse_form(request.headers.get("content-type", ""), await request.body())
    if "image" not in files:
        raise ApiError(400, "no 'image' file in the form", kind="InvalidRequest")
    name, data = files["image"]
    kind, subfolder = fields.get("type") or "input", fields.get("subfolder", "")
    overwrite = fields.get("overwrite", "").lower() in ("true", "1")
    _check_image(data, name)
    path = resolve_file(comfy, kind, name, subfolder)
    stem, suffix = os.path.splitext(path.name)
    n = 1
    while path.exists() and not overwrite:
        if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
            break  # the same image is already there
        path = path.with_name(f"{stem} ({n}){suffix}")
        n += 1
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {"name": path.name, "subfolder": subfolder, "type": kind}


def _check_image(data: bytes, name: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ApiError(
            400, f"{name!r} is not an image Pillow can read ({err})", kind="InvalidRequest"
        ) from None


@router.post("/upload/mask")
def upload_mask() -> None:
    raise ApiError(
        501, "/upload/mask is not implemented in glassforge yet; /upload/image is", kind="NotImplemented"
    )


# ---------------------------------------------------------------- websocket


@router.websocket("/ws")
async def websocket(ws: WebSocket, clientId: str | None = None) -> None:
    await ws.app.state.comfy.hub.serve(ws, clientId)


__all__ = ["WORKFLOW", "install", "router"]
