"""Reading a trace back: ``trace.json`` (structure and scalars) + ``trace.safetensors`` (tensors).

Every value under a ``"tensors"`` key (and the ``noise``, ``latents``, ``context``… names) is a key
of the safetensors file. See ``docs/explain.md`` for the format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .recorder import TRACE_FORMAT, TRACE_JSON, TRACE_TENSORS, TRACE_VERSION


class TraceError(ValueError):
    """A trace that cannot be read; the message says what was expected."""


@dataclass
class Trace:
    doc: dict[str, Any]
    tensors: dict[str, Tensor]

    def t(self, name: str | None) -> Tensor | None:
        """The tensor stored under ``name`` (None for None)."""
        if name is None:
            return None
        try:
            return self.tensors[name]
        except KeyError:
            raise TraceError(f"trace.json names tensor {name!r}, which trace.safetensors lacks") from None

    @property
    def prompt(self) -> dict[str, Any]:
        return self.doc["prompt"]

    @property
    def model(self) -> dict[str, Any]:
        return self.doc.get("model", {})

    @property
    def params(self) -> dict[str, Any]:
        return self.doc.get("params", {})

    def batch(self, n: int = 0) -> dict[str, Any]:
        return self.doc["batches"][n]

    def steps(self, n: int = 0) -> list[dict[str, Any]]:
        return self.batch(n)["steps"]

    def calls(self, step: dict[str, Any], n: int = 0) -> list[dict[str, Any]]:
        """The model calls a step made, in order."""
        calls = self.batch(n)["model_calls"]
        return [calls[k] for k in step["calls"]]

    def guidance(self, step: dict[str, Any], n: int = 0) -> list[dict[str, Any]]:
        """The guided estimates a step used, in order (one per model evaluation of the step)."""
        guidance = self.batch(n)["guidance"]
        return [guidance[k] for k in step["guidance"]]

    def step_tensor(self, step: dict[str, Any], key: str) -> Tensor | None:
        return self.t(step["tensors"].get(key))

    @property
    def attention(self) -> dict[str, Any] | None:
        """The cross-attention index (``None`` when the run recorded no attention)."""
        return self.doc.get("attention")

    def attention_maps(self, i: int, n: int = 0) -> Tensor | None:
        """Step ``i`` of batch ``n``: the cond half's maps [B, rows, H, W] (rows: ``attention["tokens"]``),
        or None when that step has none."""
        att = self.attention
        for entry in att["maps"] if att else ():
            if entry["batch"] == n and entry["step"] == i:
                return self.t(entry["tensor"])
        return None


def from_recorder(recorder) -> Trace:
    """The trace a :class:`~.recorder.TraceRecorder` holds, without writing files."""
    return Trace(json.loads(json.dumps(recorder.document(), ensure_ascii=False)), dict(recorder.tensors))


def load_trace(folder: str | Path) -> Trace:
    """Read ``trace.json`` and ``trace.safetensors`` from ``folder``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    json_path, tensor_path = folder / TRACE_JSON, folder / TRACE_TENSORS
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise TraceError(
                f"no {path.name} in {folder}; expected the output folder of 'glassforge explain'"
            )
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    if doc.get("format") != TRACE_FORMAT:
        raise TraceError(f"{json_path} is not a glassforge trace (format {doc.get('format')!r})")
    if int(doc.get("version", 0)) > TRACE_VERSION:
        raise TraceError(
            f"{json_path} has trace format version {doc.get('version')}; this glassforge reads up to "
            f"{TRACE_VERSION}"
        )
    return Trace(doc, load_file(str(tensor_path)))
