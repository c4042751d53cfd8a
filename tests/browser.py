"""Headless Chromium for the tests: the system's ``/usr/bin/chromium`` driven by playwright.

``setup.sh`` installs Debian's ``chromium`` and the ``playwright`` package (a dev extra); playwright's own
browser download (``playwright install``) is never used. Tests that need the browser call
:func:`require_chromium` (a clean skip when ``/usr/bin/chromium`` is missing), open pages with
:func:`open_page`, which records console errors, page errors and every request, and keep screenshots
under :data:`ARTIFACTS` (``tests/artifacts/``, git-ignored), printing their paths.

Shared by the explainer's report tests and the web UI's tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def require_chromium() -> None:
    """Skip the calling test when the system Chromium is missing (``setup.sh`` installs it on Debian)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium; setup.sh does this as root)")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (playwright ``Browser``), closed on exit."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=list(ARGS), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and what it reported: console errors, uncaught exceptions, the URLs it requested."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.page_errors

    def remote_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but file: and data: URLs)."""
        return [u for u in self.requests if not u.startswith(("file:", "data:", "blob:", "about:"))]


def open_page(browser, url: str, *, width: int = 1200, height: int = 900) -> Watched:
    """Open ``url`` (e.g. ``path.as_uri()``) in a new page and wait for its load event."""
    page = browser.new_page(viewport={"width": width, "height": height})
    watched = Watched(page)
    page.on("console", lambda m: watched.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.page_errors.append(str(e)))
    page.on("request", lambda r: watched.requests.append(r.url))
    page.goto(url, wait_until="load")
    return watched


def artifact(name: str) -> Path:
    """A path under ``tests/artifacts/`` for a screenshot or similar test output (the folder is created)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
