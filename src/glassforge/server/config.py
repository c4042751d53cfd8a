"""What a server is started with: address, model folders, data folder, device and precision, the
history database, and the safety options (API key, body size limit, CORS origins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PREVIEWS = ("auto", "full", "approx")


def default_data_dir() -> Path:
    return Path.home() / ".glassforge" / "server"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback by default: nothing is exposed unless asked
    port: int = 7860  # A1111's port, so its clients find us unchanged
    models_dirs: tuple[Path, ...] = ()  # looked up before $GLASSFORGE_MODELS and the usual folders
    data_dir: Path = field(default_factory=default_data_dir)
    device: str = "auto"
    precision: str = "auto"
    # Live previews of the predicted x0: "full" decodes with the VAE, "approx" maps latent channels to
    # RGB (no VAE), "auto" decodes fully for images up to ``full_preview_pixels`` and approximates above.
    preview: str = "auto"
    full_preview_pixels: int = 128 * 128
    max_models: int = 1  # checkpoints kept loaded (least recently used evicted)
    # Bounds on one request (A1111 has none; a typo of 51200 for 512 should not take the server down).
    max_size: int = 4096  # width and height
    max_steps: int = 1000
    max_images: int = 100  # batch_size × n_iter
    keep_jobs: int = 1000  # finished jobs kept in memory for /api/v1/jobs (all are in the history database)
    # The history database: None = SQLite ``history.sqlite3`` in the data folder; else a URL
    # (``sqlite:///PATH`` or ``postgresql://USER:PASSWORD@HOST:PORT/DB``).
    db_url: str | None = None
    # Safety. api_key: every route but /health and the web UI's static files needs it (header
    # ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; websockets also ``?token=KEY``). None: open.
    api_key: str | None = None
    max_body_bytes: int = 32 * 2**20  # larger request bodies (uploads included) get a 413
    cors_origins: tuple[
        str, ...
    ] = ()  # browser origins allowed to call the API from other sites; none by default

    def __post_init__(self) -> None:
        if self.preview not in PREVIEWS:
            raise ValueError(f"unknown preview mode {self.preview!r}; expected one of {', '.join(PREVIEWS)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} must be between 0 and 65535")
        if self.max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes {self.max_body_bytes} must be a positive number of bytes")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty; give a non-empty key or none")
        if self.api_key is not None and not self.api_key.isprintable():
            raise ValueError("the API key must be printable text (it travels in an HTTP header)")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin {origin!r} must look like https://example.org (or be *)")
        object.__setattr__(self, "cors_origins", tuple(o.rstrip("/") for o in self.cors_origins))
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        object.__setattr__(self, "models_dirs", tuple(Path(p).expanduser() for p in self.models_dirs))

    @property
    def output_dir(self) -> Path:
        """Generated images: ``<data>/outputs/<kind>/<YYYY-MM-DD>/<counter>-<seed>.png``."""
        return self.data_dir / "outputs"

    @property
    def history_path(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def history_db(self) -> str | Path:
        """What :class:`~.history.History` opens: the ``db_url``, else the SQLite file in the data folder."""
        return self.db_url or self.history_path

    @property
    def server_id(self) -> str:
        """Who writes history rows: this host and data folder (stable across restarts)."""
        import socket

        return f"{socket.gethostname()}:{self.data_dir.resolve()}"
