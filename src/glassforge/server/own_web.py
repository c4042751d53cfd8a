"""The web UI: ``GET /`` answers the page (``web/index.html``), ``/ui/…`` its static files.

No catch-all mount at ``/``: every other path stays free for the APIs (A1111, ComfyUI, ours), so an
unknown route still gets the JSON 404 and not a page. The files are plain HTML, CSS and JavaScript
modules in the package (``glassforge/web``); nothing is fetched from a CDN and nothing is built.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def install(app: FastAPI) -> None:
    """Serve the web UI at ``/`` (the page) and ``/ui`` (its files)."""
    from fastapi.staticfiles import StaticFiles

    index = WEB_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    def web_ui() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=WEB_DIR, check_dir=False), name="web-ui")
