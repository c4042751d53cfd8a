"""``create_app(config)``: one FastAPI app = one :class:`~.state.ServerState` + the API routers.

Adding an API (the ComfyUI routes) is one more router module reading ``request.app.state.glassforge``
and submitting :class:`~.jobs.Job` s of its own kind to the same queue; history and metrics follow.

Every error answers ``{"error": kind, "detail": "one message"}``: 422 for a bad request (the message
names the field and what is expected), 404 for an unknown model, job or route, 500 (with the reason)
for a job that failed. The worker survives all of them.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from .config import ServerConfig
from .state import ApiError, ServerState

log = logging.getLogger("glassforge.server")


def create_app(config: ServerConfig | None = None) -> FastAPI:
    from . import a1111, comfy, own, own_web
    from .a1111_request import default_options

    config = config or ServerConfig()
    state = ServerState(config)
    state.options.update(default_options(state))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        try:
            yield
        finally:
            state.stop()

    app = FastAPI(
        title="glassforge",
        version=__version__,
        description="A1111-compatible API (/sdapi/v1), glassforge's own API (/api/v1), metrics (/metrics), "
        "web UI (/), ComfyUI-compatible API (/prompt, /ws, …, also under /api) and editor (/comfy/).",
        lifespan=lifespan,
    )
    app.state.glassforge = state
    comfy.install(app, state)  # first: ComfyUI's /api/* routes win over any other /api/* route
    app.include_router(a1111.router)
    app.include_router(own.router)
    own_web.install(app)  # the web UI: GET / and /ui/* (no catch-all, so it shadows no API route)
    _add_error_handlers(app)

    @app.get("/health", tags=["glassforge API"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    return app


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": kind, "detail": message})


def validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic's error list as one line: ``width: Input should be a valid integer (got 'wide')``."""
    parts = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            position = err["loc"][-1] if len(err.get("loc", ())) > 1 else "?"
            parts.append(f"body: not valid JSON ({reason} at character {position})")
            continue
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        text = f"{where}: {err.get('msg', 'invalid')}"
        value = err.get("input")
        if loc and value is not None and not isinstance(value, dict | list) and err.get("type") != "missing":
            text += f" (got {value!r})"
        parts.append(text)
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "InvalidRequest", validation_message(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return _error(exc.status_code, kind, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _error(500, type(exc).__name__, str(exc) or type(exc).__name__)
