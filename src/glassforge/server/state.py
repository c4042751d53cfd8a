"""What one server holds: its config, the shared model cache, the job queue, the history, the metrics.

One :class:`ServerState` per app (``app.state.glassforge``), passed to the routers — no module globals,
so several apps (tests) can live in one process.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from .config import ServerConfig
from .history import History
from .jobs import JobQueue
from .metrics import Metrics

_TITLE_HASH = re.compile(r"^(.*\S)\s+\[[0-9a-fA-F]{8,64}\]$")
HASH_WHEN_LISTING_BYTES = 512 * 2**20  # larger files are hashed when loaded (or found in the hash cache)


class ApiError(Exception):
    """A request that cannot be served: HTTP ``status`` and one message saying what to send instead."""

    def __init__(self, status: int, message: str, kind: str | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.kind = kind or {404: "NotFound", 409: "Conflict", 422: "InvalidRequest"}.get(status, "Error")


class ServerState:
    def __init__(self, config: ServerConfig):
        from ..models.locate import model_folders
        from ..models.manager import ModelManager
        from ..models.runtime import resolve_runtime

        self.config = config
        runtime = resolve_runtime(config.device, config.precision)
        self.manager = ModelManager(
            folders=model_folders(list(config.models_dirs)), runtime=runtime, max_models=config.max_models
        )
        self.queue = JobQueue(device=runtime.device.type, keep=config.keep_jobs)
        self.history = History(config.history_db, server=config.server_id)
        self.metrics = Metrics()
        self.queue.listeners += [self._record, self.metrics.on_job]
        names = self.manager.names()
        self.current_model: str | None = names[0] if names else None  # the embedded model when present
        self.options: dict[str, Any] = {}  # A1111's settings (filled by the A1111 router)
        self._hash_lock = threading.Lock()

    def _record(self, job, what: str) -> None:
        self.history.record(job)

    def start(self) -> None:
        self.history.mark_unfinished()
        self.queue.start()

    def stop(self) -> None:
        self.queue.stop()
        self.history.close()

    # ---------------------------------------------------------------- models

    def model_names(self) -> list[str]:
        return self.manager.names()

    def model_path(self, name: str | None) -> Path:
        """The checkpoint for a name users send: file name, stem, path, or an A1111 title
        (``name.safetensors [hash]``). Raises ApiError 404 listing the models."""
        name = name or self.current_model
        m = _TITLE_HASH.match(name or "")
        if m:
            name = m.group(1)
        try:
            return self.manager.path_of(name)
        except FileNotFoundError:
            known = ", ".join(self.model_names()) or "none"
            raise ApiError(404, f"no model {name!r}; available models: {known}") from None

    def load_model(self, name: str | None):
        """The loaded model (ManagedModel) for ``name`` — on the worker thread: loads are slow. A load
        (not a cache hit) is timed into the metrics."""
        path = self.model_path(name).resolve()
        cached = any(entry.path == path for entry in self.manager.loaded())
        started = time.perf_counter()
        managed = self.manager.get(str(path))
        if not cached:
            self.metrics.on_model_load(time.perf_counter() - started)
        return managed

    def sha256(self, path: Path, *, compute: bool = True) -> str | None:
        """Full sha256 of a checkpoint file: from the hash cache, else computed when ``compute`` and the
        file is not huge; None otherwise (and for diffusers folders)."""
        from ..pngfile import _load_cache, sha256_file

        if not path.is_file():
            return None
        cache = self.manager.hash_cache
        stat = path.stat()
        entry = _load_cache(cache).get(str(path.resolve())) if cache is not None else None
        if isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns")) == (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            return entry.get("sha256")
        if not compute or stat.st_size > HASH_WHEN_LISTING_BYTES:
            return None
        with self._hash_lock:
            return sha256_file(path, cache)

    def model_title(self, name: str) -> str:
        """A1111's checkpoint title: ``file name [short hash]`` (without the hash while unknown)."""
        path = self.model_path(name)
        digest = self.sha256(path)
        display = path.name if path.name in self.model_names() else name
        return f"{display} [{digest[:10]}]" if digest else display
