"""Finding checkpoints: a path, or a name looked up in the model folders users already have."""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
EMBEDDED_MODEL = "glassforge-shapes"


def embedded_model_path() -> Path:
    """The small model shipped inside the package (trained by ``glassforge train shapes``)."""
    return Path(__file__).resolve().parent.parent / "data" / f"{EMBEDDED_MODEL}.safetensors"


def model_folders(extra: list[str | os.PathLike] | None = None) -> list[Path]:
    """Where names are looked up, in order: ``extra``, ``$GLASSFORGE_MODELS`` (``os.pathsep``-separated),
    ``./models/Stable-diffusion`` (A1111/Forge), ``./models/checkpoints`` (ComfyUI), ``~/.glassforge/models``."""
    folders = [Path(p) for p in (extra or [])]
    env = os.environ.get("GLASSFORGE_MODELS")
    if env:
        folders += [Path(p) for p in env.split(os.pathsep) if p]
    folders += [
        Path("models/Stable-diffusion"),
        Path("models/checkpoints"),
        Path.home() / ".glassforge" / "models",
    ]
    return folders


def list_checkpoints(folders: list[Path]) -> list[Path]:
    """Checkpoint files and diffusers folders (with ``model_index.json``) directly in ``folders``."""
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if (entry.is_file() and entry.suffix.lower() in CHECKPOINT_SUFFIXES) or (
                entry.is_dir() and (entry / "model_index.json").is_file()
            ):
                found.append(entry)
    return found


def find_model(name: str | None, folders: list[Path] | None = None) -> Path:
    """A model path from a path, a file name or stem in the model folders, or None → the embedded model."""
    if not name or name == EMBEDDED_MODEL:
        path = embedded_model_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"the embedded model {EMBEDDED_MODEL} is not installed at {path}; pass --model PATH to a checkpoint"
            )
        return path
    path = Path(name).expanduser()
    if path.exists():
        return path
    folders = model_folders() if folders is None else folders
    for candidate in list_checkpoints(folders):
        if name in (candidate.name, candidate.stem):
            return candidate
    searched = ", ".join(str(f) for f in folders)
    raise FileNotFoundError(f"no model {name!r}: not a path, and not a checkpoint name in {searched}")
