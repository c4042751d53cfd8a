"""The official ComfyUI frontend at ``/comfy/``, and the routes it needs to boot (reference §5).

The frontend is the ``comfyui-frontend-package`` wheel (GPL-3.0-only, 53 MB unpacked), an optional
extra: ``pip install 'glassforge[comfyui]'``. Without it ``/comfy/`` says how to install it. Its
``index.html`` loads assets by relative paths and derives the API base from the page's folder, so at
``/comfy/`` it calls ``/comfy/api/...`` and ``/comfy/ws``, where :func:`~.comfy.install` registers the API.

``GET /extensions`` lists glassforge's one frontend extension, ``web/comfy/open-job.js``: the frontend
imports it at boot (from its page folder: ``/comfy/extensions/glassforge/open-job.js``), and it loads the
job named by ``/comfy/?glassforge_job=<id>`` (or the web UI's form, ``?glassforge_form=<JSON>``) as the graph.

Single user (ComfyUI without ``--multi-user``): settings and user files (saved workflows, subgraphs)
live under ``<data>/comfyui/user/default/``; paths that leave it are refused with 403.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from .state import ApiError

router = APIRouter(tags=["ComfyUI frontend"])
PACKAGE = "comfyui_frontend_package"
EXTENSION_DIR = Path(__file__).resolve().parent.parent / "web" / "comfy"
# The frontend's extension modules, as ComfyUI lists them: paths the frontend prefixes with its page folder.
EXTENSIONS = ("/extensions/glassforge/open-job.js",)
SETTINGS_FILE = "comfy.settings.json"
# What a first visit gets before the user changes anything: the default graph rather than the
# template browser (which needs ComfyUI's template package), and no "what's new" for this version.
# The two canvas settings are what 1.27.10's default "legacy" navigation mode sets when it registers
# (it calls set() for settings not registered yet and throws unless the values are already there).
# Version updates are fetched from api.comfy.org: off (no network calls from a local server's page).
DEFAULT_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.InstalledVersion": "1.27.10",
    "Comfy.Canvas.LeftMouseClickBehavior": "panning",
    "Comfy.Canvas.MouseWheelScroll": "zoom",
    "Comfy.Notification.ShowVersionUpdates": False,
}
# Files a new user folder starts with, so the frontend's boot requests find them (ComfyUI answers 404).
DEFAULT_USER_FILES = {
    "user.css": "/* Your own styles for the ComfyUI frontend. */\n",
    "comfy.templates.json": "[]\n",
    "workflows/": "",
    "subgraphs/": "",
}
NOT_INSTALLED = """<!doctype html><html><head><meta charset="utf-8"><title>ComfyUI frontend not installed</title>
</head><body style="font-family: sans-serif; max-width: 44em; margin: 3em auto">
<h1>The ComfyUI frontend is not installed</h1>
<p>glassforge serves the official ComfyUI node editor here when its package is installed:</p>
<pre>pip install 'glassforge[comfyui]'    # comfyui-frontend-package==1.27.10 (GPL-3.0-only, 53 MB)</pre>
<p>then restart <code>glassforge serve</code>. The ComfyUI API (<code>/prompt</code>, <code>/ws</code>, …) works
without it.</p></body></html>"""


def frontend_root() -> Path | None:
    """The wheel's ``static`` folder, or None when ``comfyui-frontend-package`` is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "static"
    return root if (root / "index.html").is_file() else None


def mount(app: FastAPI) -> None:
    """``/comfy/``: the frontend's files (or a page saying how to install them)."""
    from starlette.staticfiles import StaticFiles

    root = frontend_root()

    @app.get("/comfy", include_in_schema=False)
    def comfy_slash() -> RedirectResponse:
        return RedirectResponse("/comfy/")  # the frontend takes its API base from the page's folder

    @app.get("/comfy/", include_in_schema=False)
    def index() -> Response:
        if root is None:
            return HTMLResponse(NOT_INSTALLED, status_code=404)
        html = (root / "index.html").read_text(encoding="utf-8")
        # its own icon, so the browser does not ask the site root for /favicon.ico
        html = html.replace("<head>", '<head><link rel="icon" href="./assets/favicon.ico">', 1)
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/extensions/glassforge/{name}", include_in_schema=False)
    @app.get("/comfy/extensions/glassforge/{name}", include_in_schema=False)
    def extension(name: str) -> Response:  # before the /comfy mount, which would answer 404
        if f"/extensions/glassforge/{name}" not in EXTENSIONS:
            raise ApiError(404, f"no glassforge extension {name!r}; there is {', '.join(EXTENSIONS)}")
        return FileResponse(EXTENSION_DIR / name, media_type="text/javascript",
                            headers={"Cache-Control": "no-cache"})  # fmt: skip

    @app.get("/comfy/user.css", include_in_schema=False)
    @app.get("/user.css", include_in_schema=False)
    def user_css(request: Request) -> Response:
        path = _user_dir(request) / "user.css"
        css = path.read_text() if path.is_file() else "/* put your own styles in user.css (userdata) */\n"
        return Response(css, media_type="text/css")

    @app.get("/comfy/templates/index.json", include_in_schema=False)
    @app.get("/templates/index.json", include_in_schema=False)
    def templates() -> list:
        return []  # ComfyUI's workflow templates come from another package (comfyui-workflow-templates)

    if root is not None:

        @app.get("/assets/favicon.ico", include_in_schema=False)
        @app.get("/assets/images/favicon_progress_16x16/{name}", include_in_schema=False)
        def favicon(name: str = "") -> Response:  # the frontend asks for these at the server's root
            path = root / "assets" / ("favicon.ico" if not name else f"images/favicon_progress_16x16/{name}")
            if "/" in name or ".." in name or not path.is_file():
                raise ApiError(404, f"no frontend file {name!r}")
            return FileResponse(path)

    if root is None:

        @app.get("/comfy/{path:path}", include_in_schema=False)
        def missing(path: str) -> Response:
            return HTMLResponse(NOT_INSTALLED, status_code=404)

    else:
        app.mount("/comfy", StaticFiles(directory=root), name="comfy-frontend")


# ---------------------------------------------------------------- users and settings


def _user_dir(request: Request) -> Path:
    """The user folder; made with :data:`DEFAULT_USER_FILES` the first time it is needed."""
    root = request.app.state.comfy.user_dir
    if not root.is_dir():
        for name, text in DEFAULT_USER_FILES.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith("/"):
                path.mkdir(exist_ok=True)
            else:
                path.write_text(text)
    return root


def _read_settings(request: Request) -> dict[str, Any]:
    path = _user_dir(request) / SETTINGS_FILE
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        stored = {}
    return {**DEFAULT_SETTINGS, **(stored if isinstance(stored, dict) else {})}


def _write_settings(request: Request, settings: dict[str, Any]) -> None:
    path = _user_dir(request) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=4, ensure_ascii=False))
    tmp.replace(path)


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError as err:
        raise ApiError(400, f"body: not valid JSON ({err})", kind="InvalidRequest") from None


@router.get("/users")
def users() -> dict[str, Any]:
    return {"storage": "server", "migrated": True}  # one user, "default"


@router.post("/users")
def create_user() -> JSONResponse:
    return JSONResponse("default")  # single-user server: everybody is "default"


@router.get("/settings")
def get_settings(request: Request) -> dict[str, Any]:
    return _read_settings(request)


@router.post("/settings")
async def post_settings(request: Request) -> Response:
    values = await _body(request)
    if not isinstance(values, dict):
        raise ApiError(400, "body: expected an object of setting id → value", kind="InvalidRequest")
    _write_settings(request, {**_read_settings(request), **values})
    return Response(status_code=200)


@router.get("/settings/{setting_id}")
def get_setting(setting_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_read_settings(request).get(setting_id))


@router.post("/settings/{setting_id}")
async def post_setting(setting_id: str, request: Request) -> Response:
    value = await _body(request)
    _write_settings(request, {**_read_settings(request), setting_id: value})
    return Response(status_code=200)


@router.get("/extensions")
def extensions() -> list[str]:
    """The JS modules the frontend imports at boot (ComfyUI lists its custom nodes' ``WEB_DIRECTORY``)."""
    return list(EXTENSIONS)


@router.get("/i18n")
def i18n() -> dict:
    return {}  # custom-node translations: none


@router.get("/workflow_templates")
def workflow_templates() -> dict:
    return {}  # custom-node templates: none


# ---------------------------------------------------------------- user files


def user_path(request: Request, relative: str, *, allow_root: bool = False) -> Path:
    """``relative`` inside the user folder, resolved; ApiError 403 for anything outside it."""
    root = _user_dir(request).resolve()
    if "\0" in relative or os.path.isabs(relative):
        raise ApiError(403, f"{relative!r} is outside the user folder", kind="Forbidden")
    path = (root / relative).resolve()
    if not (root in path.parents or (allow_root and path == root)):
        raise ApiError(403, f"{relative!r} is outside the user folder", kind="Forbidden")
    return path


def file_info(path: Path, root: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": stat.st_size, "modified": stat.st_mtime}


def _flag(value: str | None, default: bool = False) -> bool:
    return default if value is None else value.lower() in ("true", "1", "yes")


@router.get("/userdata", response_model=None)
def list_userdata(request: Request, dir: str = "", recurse: str | None = None, full_info: str | None = None,
                  split: str | None = None) -> list:  # fmt: skip
    """Files under ``dir``: relative paths, or ``{"path", "size", "modified"}`` with ``full_info``, or
    ``[path, *parts]`` with ``split``; 404 if the folder does not exist."""
    if not dir:
        raise ApiError(400, "dir: required (e.g. dir=workflows)", kind="InvalidRequest")
    folder = user_path(request, dir)
    if not folder.is_dir():
        raise ApiError(404, f"no user folder {dir!r}")
    found = folder.rglob("*") if _flag(recurse) else folder.iterdir()
    files = sorted(p for p in found if p.is_file())
    if _flag(full_info):
        return [file_info(p, folder) for p in files]
    paths = [p.relative_to(folder).as_posix() for p in files]
    return [[p, *p.split("/")] for p in paths] if _flag(split) else paths


@router.get("/v2/userdata")
def list_userdata_v2(request: Request, path: str = "") -> list[dict[str, Any]]:
    """One folder, not recursive: ``[{"name", "path", "type": "file"|"directory", "size"?, "modified"?}]``."""
    root = _user_dir(request).resolve()
    folder = user_path(request, path, allow_root=True) if path else root
    if not folder.is_dir():
        raise ApiError(404, f"no user folder {path!r}")
    out = []
    for entry in sorted(folder.iterdir()):
        rel = entry.relative_to(root).as_posix()
        if entry.is_dir():
            out.append({"name": entry.name, "path": rel, "type": "directory"})
        else:
            stat = entry.stat()
            out.append({"name": entry.name, "path": rel, "type": "file", "size": stat.st_size,
                        "modified": stat.st_mtime})  # fmt: skip
    return out


def _saved(path: Path, root: Path, full_info: str | None) -> JSONResponse:
    return JSONResponse(file_info(path, root) if _flag(full_info) else path.relative_to(root).as_posix())


@router.post("/userdata/{file:path}/move/{dest:path}")
def move_userdata(file: str, dest: str, request: Request, overwrite: str | None = None,
                  full_info: str | None = None) -> JSONResponse:  # fmt: skip
    source, target = user_path(request, file), user_path(request, dest)
    if not source.is_file():
        raise ApiError(404, f"no user file {file!r}")
    if target.exists() and not _flag(overwrite, True):
        raise ApiError(409, f"{dest!r} exists (send overwrite=true to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)
    return _saved(target, _user_dir(request).resolve(), full_info)


@router.get("/userdata/{file:path}", response_model=None)
def get_userdata(file: str, request: Request) -> FileResponse:
    path = user_path(request, file)
    if not path.is_file():
        raise ApiError(404, f"no user file {file!r}")
    return FileResponse(path)


@router.post("/userdata/{file:path}")
async def post_userdata(file: str, request: Request, overwrite: str | None = None,
                        full_info: str | None = None) -> JSONResponse:  # fmt: skip
    path = user_path(request, file)
    if path.exists() and not _flag(overwrite, True):
        raise ApiError(409, f"{file!r} exists (send overwrite=true to replace it)")
    if path.is_dir():
        raise ApiError(400, f"{file!r} is a folder", kind="InvalidRequest")
    data = await request.body()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return _saved(path, _user_dir(request).resolve(), full_info)


@router.delete("/userdata/{file:path}")
def delete_userdata(file: str, request: Request) -> Response:
    path = user_path(request, file)
    if not path.is_file():
        raise ApiError(404, f"no user file {file!r}")
    path.unlink()
    return Response(status_code=204)


# ---------------------------------------------------------------- the model browser


@router.get("/experiment/models")
def experiment_models(request: Request) -> list[dict[str, Any]]:
    folders = [str(p) for p in request.app.state.comfy.state.manager.folders]
    return [{"name": "checkpoints", "folders": folders}]


@router.get("/experiment/models/{folder}")
def experiment_models_in(folder: str, request: Request) -> list[dict[str, Any]]:
    if folder != "checkpoints":
        raise ApiError(404, f"no model folder {folder!r}; glassforge has checkpoints")
    names = request.app.state.comfy.env.checkpoint_names()
    return [{"name": name, "pathIndex": 0} for name in names]
