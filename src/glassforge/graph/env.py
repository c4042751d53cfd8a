"""What nodes may use besides their inputs: the model manager and the folders (ComfyUI's input, output
and temp), passed explicitly — no global state."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..models.manager import ModelManager


@dataclass
class GraphEnv:
    models: ModelManager = field(default_factory=ModelManager)
    output_dir: Path = field(default_factory=lambda: Path("outputs"))
    input_dir: Path = field(default_factory=lambda: Path("inputs"))
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "glassforge-temp")
    preview: str = "none"  # per-step previews from sampling nodes: "none", "rgb" (latent→RGB), "vae"

    def checkpoint_names(self) -> list[str]:
        return self.models.names()

    def input_images(self) -> list[str]:
        if not self.input_dir.is_dir():
            return []
        suffixes = {".png", ".jpg", ".jpeg", ".webp"}
        return sorted(p.name for p in self.input_dir.iterdir() if p.suffix.lower() in suffixes)
