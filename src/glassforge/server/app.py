"""``create_app(config)``: one FastAPI app = one :class:`~.state.ServerState` + the API routers.

Adding an API (the ComfyUI routes) is one more router module reading ``request.app.state.glassforge``
and submitting :class:`~.jobs.Job` s of its own kind to the same queue; history and metrics follow.

Every error answers ``{"error": kind, "detail": "one message"}``: 422 for a bad request (the message
names the field and what is expected), 404 for an unknown model, job or route, 401 without the API key
(when the server has one), 413 for a body over the size limit, 500 (with the reason) for a job that
failed. The worker survives all of them.

:class:`Guard` (pure ASGI, so it covers websockets and streamed bodies) checks the API key and the body
size before any route runs; CORS is off unless origins are given, and then FastAPI's CORSMiddleware sits
outside the guard so a browser's preflight (which carries no key) is answered.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote

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
    app.add_middleware(Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes)
    if config.cors_origins:  # added last = outermost: preflights are answered before the key check
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Step"],
        )

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
        kind = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}.get(
            exc.status_code, "HTTPError"
        )
        return _error(exc.status_code, kind, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _error(500, type(exc).__name__, str(exc) or type(exc).__name__)


# ---------------------------------------------------------------- the API key and the body size limit

API_KEY_COOKIE = "glassforge_api_key"  # set by the web UI (SameSite=Strict) so <img> and <iframe> URLs work
KEY_HELP = (
    "this server needs its API key: send the header 'Authorization: Bearer KEY' or 'X-API-Key: KEY', "
    "or HTTP basic auth with the key as password (websockets may add ?token=KEY to the URL; in the web UI "
    "open /?api_key=KEY once)"
)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than the server's limit of {_size(limit)}")


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB ({n} bytes)" if n >= 2**20 else f"{n} bytes"


def public_path(path: str) -> bool:
    """Routes open without the API key: the health check and the web UI's static files (no data)."""
    if ".." in path.split("/"):
        return False
    return path in ("/health", "/", "/ui") or path.startswith("/ui/")


class Guard:
    """ASGI middleware: refuse requests without the API key (401) and bodies over ``max_body_bytes`` (413).

    The key is accepted as ``Authorization: Bearer KEY``, ``X-API-Key: KEY``, HTTP basic auth with any user
    name and the key as password (the auth option A1111 and ComfyUI clients have), the web UI's cookie, and
    on websockets also ``?token=KEY``."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.key is not None and not public_path(scope["path"]) and not self._authorized(scope):
            await _deny(scope, send, 401, "Unauthorized", KEY_HELP)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _deny(scope, send, 413, "PayloadTooLarge", BodyTooLarge(self.max_body_bytes).detail)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope, receive, send) -> None:
        """Run the app counting the body as it arrives (a chunked upload has no Content-Length)."""
        seen, started = 0, False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)  # FastAPI answers it as an HTTPException
            return message

        async def watching_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:  # raised where no exception handler runs (a streaming route)
            if started:
                raise
            await _deny(scope, send, 413, "PayloadTooLarge", exc.detail)

    def _authorized(self, scope) -> bool:
        headers = dict(scope["headers"])
        offered = []
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            offered.append(auth[7:].strip())
        elif (
            auth[:6].lower() == b"basic "
        ):  # any user name, the key as password: what A1111/ComfyUI clients send
            with contextlib.suppress(ValueError):
                offered.append(base64.b64decode(auth[6:].strip(), validate=True).partition(b":")[2])
        offered.append(headers.get(b"x-api-key", b"").strip())
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == API_KEY_COOKIE:
                offered.append(unquote(value).encode())
        if scope["type"] == "websocket":
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            offered += [unquote(v).encode() for k, v in query if k == "token"]
        # compare_digest on every candidate (no short cut): the time taken says nothing about the key
        matches = [hmac.compare_digest(candidate, self.key) for candidate in offered if candidate]
        return any(matches)


async def _deny(scope, send, status: int, kind: str, message: str) -> None:
    """Answer ``{"error", "detail"}`` with ``status``: an HTTP response, or for a websocket the same as
    its handshake's answer (where the server supports that; else the handshake is closed, 403)."""
    body = json.dumps({"error": kind, "detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="glassforge"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
