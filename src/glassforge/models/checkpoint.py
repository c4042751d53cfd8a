"""Reading checkpoint files safely.

* ``.safetensors``: the header is checked first (so a truncated or foreign file gets a precise message),
  then the tensors are memory-mapped with ``safetensors.torch.load_file`` — nothing is copied until it
  is touched, and a write to a tensor is copy-on-write (the file never changes).
* ``.ckpt`` / ``.pt`` / ``.pth`` / ``.bin``: only ``torch.load(weights_only=True)`` (memory-mapped when
  the file is in torch's zip format). Pickled code is refused, never run. A few metadata objects that
  Lightning-era Stable Diffusion ``.ckpt`` files carry next to the weights (``ModelCheckpoint``
  callbacks, numpy scalars) unpickle as inert placeholders, as A1111's restricted unpickler allows them.
  ``{"state_dict": {...}}`` wrappers are unwrapped.

Everything else is refused with a one-line :class:`CheckpointError` saying what was found and what
is expected.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# safetensors dtype names → bytes per element (header validation only)
_SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
    "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message says what was found and what is expected."""


@dataclass
class StateDict:
    """The tensors of one checkpoint file, with the file's text metadata (safetensors ``__metadata__``)."""

    tensors: dict[str, Tensor]
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)
    memory_mapped: bool = False

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def __getitem__(self, key: str) -> Tensor:
        return self.tensors[key]

    def keys(self):
        return self.tensors.keys()

    def with_prefix(self, prefix: str) -> dict[str, Tensor]:
        """The tensors under ``prefix``, with the prefix removed."""
        n = len(prefix)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def prefix_summary(keys, depth: int = 2, limit: int = 6) -> str:
    """'model.diffusion_model (686), first_stage_model (248), …' — what a file holds, for error messages."""
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    parts = [f"{p}.* ({n})" for p, n in counts.most_common(limit)]
    if len(counts) > limit:
        parts.append(f"… {len(counts) - limit} more prefixes")
    return ", ".join(parts) if parts else "no tensors"


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """Parse and validate a safetensors header: (header dict, expected file size in bytes)."""
    size = path.stat().st_size
    name = path.name
    if size < 8:
        raise CheckpointError(
            f"{name}: {size} bytes is too short for a safetensors file "
            "(expected an 8-byte header length, a JSON header and tensor data)"
        )
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if header_len > size - 8:
            raise CheckpointError(
                f"{name}: not a safetensors file or truncated: its first 8 bytes declare a "
                f"{header_len}-byte header but only {size - 8} bytes follow"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{name}: not a safetensors file: the header is not a JSON object of tensors ({e})"
        ) from None
    data_end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, end = info["data_offsets"]
            data_end = max(data_end, int(end))
            dtype = info["dtype"]
            n = 1
            for d in info["shape"]:
                n *= int(d)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{name}: malformed safetensors header entry {key!r} (expected dtype, shape and data_offsets)"
            ) from None
        if dtype in _SAFETENSORS_ITEMSIZE and end - begin != n * _SAFETENSORS_ITEMSIZE[dtype]:
            raise CheckpointError(
                f"{name}: tensor {key!r} has {end - begin} bytes but its shape and dtype need "
                f"{n * _SAFETENSORS_ITEMSIZE[dtype]}"
            )
    expected = 8 + header_len + data_end
    if size < expected:
        raise CheckpointError(
            f"{name}: truncated: the header describes {data_end} bytes of tensor data, the file holds "
            f"{size - 8 - header_len} ({size} of {expected} bytes); download or copy it again"
        )
    return header, expected


def _load_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header, _ = read_safetensors_header(path)
    metadata = header.get("__metadata__") or {}
    try:
        tensors = load_file(str(path))  # memory-mapped, lazily paged in
    except SafetensorError as e:
        raise CheckpointError(f"{path.name}: unreadable safetensors file ({e})") from None
    return StateDict(tensors, path, {str(k): str(v) for k, v in metadata.items()}, memory_mapped=True)


class _Inert:
    """Stand-in for harmless metadata objects in old ``.ckpt`` files; it keeps nothing and runs nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


# Globals that SD-era Lightning checkpoints carry outside the weights. They become _Inert.
_INERT_GLOBALS = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
)


def _torch_load(path: Path) -> object:
    safe = [(_Inert, name) for name in _INERT_GLOBALS]
    with torch.serialization.safe_globals(safe):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
        # not in torch's zip format (legacy or plain pickle): same restricted unpickler, no mmap
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_pickle(path: Path) -> StateDict:
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), "")
        raise CheckpointError(
            f"{path.name}: refused: the pickle wants to import or run code, not just hold tensors"
            f"{' (' + detail.strip() + ')' if detail else ''}; only weights are loaded from .ckpt/.pt "
            "(torch.load weights_only=True) — convert it to .safetensors with a trusted tool"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path.name}: not a readable PyTorch checkpoint ({msg}); expected a file written by torch.save"
        ) from None
    while isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path.name}: holds a {type(obj).__name__}, expected a dict of tensors (a state dict)"
        )
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(
            f"{path.name}: holds no tensors (keys: {', '.join(map(str, list(obj)[:8])) or 'none'}); "
            "expected a state dict"
        )
    return StateDict(tensors, path, {}, memory_mapped=True)


def load_state_dict(path: str | os.PathLike) -> StateDict:
    """Read every tensor of a checkpoint file (memory-mapped), refusing anything but plain weights."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; expected a .safetensors/.ckpt file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _load_pickle(path)
    raise CheckpointError(
        f"{path.name}: unsupported file type {suffix or '(no suffix)'!r}; expected "
        f"{', '.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)}"
    )


def dominant_dtype(tensors) -> torch.dtype:
    """The floating dtype holding most bytes among ``tensors`` (float32 if there are none)."""
    sizes: Counter = Counter()
    for t in tensors:
        if t.is_floating_point():
            sizes[t.dtype] += t.numel() * t.element_size()
    return sizes.most_common(1)[0][0] if sizes else torch.float32
