"""Models kept loaded between generations: look up by name, load once, evict the least recently used.

One ``ModelManager`` belongs to a process (the CLI's run, the server's worker); the workflow's
checkpoint loader and the A1111 API ask it for models by the names users see (file name, stem, or a
path). Memory is budgeted by the bytes of each model's weights.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from .locate import EMBEDDED_MODEL, embedded_model_path, find_model, list_checkpoints, model_folders
from .runtime import Runtime, resolve_runtime


@dataclass
class ManagedModel:
    model: object  # LoadedModel
    path: Path
    name: str  # the name users see: file name (the embedded model: its stem)
    bytes: int
    hash: str | None = None  # A1111's short sha256, when known


def _model_bytes(model) -> int:
    modules = [model.unet, model.vae, *(enc.model for enc in model.text_encoders)]
    return sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values())


@dataclass
class ModelManager:
    folders: list[Path] = field(default_factory=model_folders)
    runtime: Runtime | None = None  # None → resolve_runtime("auto", "auto") at first load
    budget_bytes: int | None = None  # None → keep at most ``max_models`` models
    max_models: int = 1
    hash_cache: Path | None = field(default_factory=lambda: Path.home() / ".glassforge" / "hashes.json")
    vae: Path | None = None  # a VAE file replacing every checkpoint's baked VAE (A1111's SD VAE setting)
    prediction: str | None = None  # "eps"/"v": overrides detection for every model loaded
    _loaded: OrderedDict[Path, ManagedModel] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def names(self) -> list[str]:
        """Checkpoint names in the folders, the embedded model first."""
        found = [EMBEDDED_MODEL + ".safetensors"] if embedded_model_path().is_file() else []
        return found + [p.name for p in list_checkpoints(self.folders)]

    def path_of(self, name: str | None) -> Path:
        if name in (EMBEDDED_MODEL + ".safetensors",):
            name = EMBEDDED_MODEL
        return find_model(name, self.folders)

    def loaded(self) -> list[ManagedModel]:
        return list(self._loaded.values())

    def get(self, name: str | None, *, vae: str | os.PathLike | None = None) -> ManagedModel:
        """The model called ``name`` (None → the embedded model), loading it if needed; ``vae`` replaces
        its VAE for this one load (not kept)."""
        from ..pngfile import model_hash
        from .loader import load_model
        from .runtime import place_model

        path = self.path_of(name).resolve()
        with self._lock:
            entry = self._loaded.get(path)
            if entry is not None and vae is None:
                self._loaded.move_to_end(path)
                return entry
            if self.runtime is None:
                self.runtime = resolve_runtime()
            model = place_model(
                load_model(path, vae=vae or self.vae, prediction=self.prediction), self.runtime
            )
            digest = model_hash(path, self.hash_cache) if path.is_file() else None
            entry = ManagedModel(model, path, path.name, _model_bytes(model), digest)
            if vae is None:
                self._loaded[path] = entry
                self._evict()
            return entry

    def _evict(self) -> None:
        def over() -> bool:
            if len(self._loaded) <= 1:
                return False
            if self.budget_bytes is not None:
                return sum(e.bytes for e in self._loaded.values()) > self.budget_bytes
            return len(self._loaded) > self.max_models

        while over():
            self._loaded.popitem(last=False)

    def unload_all(self) -> None:
        with self._lock:
            self._loaded.clear()
